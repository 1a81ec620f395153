#![allow(dead_code)]

pub mod mqtt;
pub mod pg;
pub mod pki;
pub mod proxy;
pub mod server;
