"""Running models efficiently: device selection and memory-adaptive batching."""
