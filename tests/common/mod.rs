#![allow(dead_code)]

pub mod pg;
pub mod proxy;
pub mod server;
