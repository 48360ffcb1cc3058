//! C ABI for respool (work in progress: no symbols are exported yet).
