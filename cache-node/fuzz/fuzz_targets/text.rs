//! Arbitrary bytes through the text and meta protocols, parser and engine together.
#![no_main]

mod common;

use cache_node::engine::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::drive(data, text::process));
