"""HTTP to Alida: token, one retry policy, requests and file downloads."""
