//! Integration tests live in `tests/tests/`; fixtures in `tests/fixtures/` (made by `cargo xtask fixtures`).
