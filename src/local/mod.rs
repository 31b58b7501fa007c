//! What lives on the volume: the output and its lock (atomic writes), the dotenv view, the
//! signing keys and their rotation. Nothing here speaks HTTP.

pub mod dotenv;
pub mod keyplan;
pub mod keyring;
pub mod keys;
pub mod keyset;
pub mod store;
