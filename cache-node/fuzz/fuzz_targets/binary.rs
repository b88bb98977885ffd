//! Arbitrary bytes through the binary protocol, parser and engine together.
#![no_main]

mod common;

use cache_node::engine::binary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::drive(data, binary::process));
