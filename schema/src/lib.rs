//! Persistence for callplane: the diesel schema, the rows and API shapes stored in it,
//! the query functions, the connection pool and the embedded migrations.
//!
//! Every query runs through [`Db`]: reads on the blocking pool, writes through the
//! group-commit writer (see [`db`]). Query functions take `&mut DbConn` so that they
//! compose inside one transaction.

pub mod db;
pub mod enums;
pub mod error;
pub mod ids;
pub mod models;
pub mod page;
pub mod schema;
pub mod time;

pub use db::{Backend, Db, DbConn, DbSettings, WriteCtx};
pub use error::DbError;
