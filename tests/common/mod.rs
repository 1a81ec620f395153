#![allow(dead_code)]

pub mod mqtt;
pub mod opcua;
pub mod opcua_queries;
pub mod pg;
pub mod pki;
pub mod proxy;
pub mod server;
pub mod site;
