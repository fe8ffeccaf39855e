//! `tandem-scheduler`: turns a loaded model into generated tokens.
