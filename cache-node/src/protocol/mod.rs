//! Wire formats: bytes in, requests out, and the shapes of replies. No sockets, no store.

pub mod auth;
pub mod binary;
pub mod meta;
pub mod text;
