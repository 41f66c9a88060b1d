//! Response writer: appends a SIP response into a caller-owned buffer.
