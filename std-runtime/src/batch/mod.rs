//! (being written: the Go-compatible batch API)
