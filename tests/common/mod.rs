#![allow(dead_code)]

pub mod mqtt;
pub mod mqtt_observer;
pub mod pg;
pub mod proxy;
pub mod server;
