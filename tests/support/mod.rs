#![allow(dead_code)]

pub mod s3;
pub mod pg;
