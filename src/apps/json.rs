//! `json`: `{"message":"Hello, World!"}`, serialised per request (TechEmpower's JSON test).

use serde::Serialize;

use crate::{Request, Response};

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

pub fn handle(_req: &Request<'_>, res: &mut Response<'_>) {
    res.header("Content-Type", "application/json");
    let message = Message {
        message: "Hello, World!",
    };
    // Serialising a struct of one string into a Vec cannot fail.
    if serde_json::to_writer(res.body_mut(), &message).is_err() {
        res.status(500);
    }
}
