//! The tasks feature's tests: its store on both backends (one suite), and the whole
//! flow over HTTP on a real server (task → reminder → `task.due` → notification).

mod flow;
mod openapi;
mod store;
mod support;
