package jsonrpc

// AppendReplaced appends msg to dst with part, a subslice of msg, replaced by
// repl. part must alias msg, as Message.ID and Message.Raw do for the data
// passed to Parse and Lookup's result does for its input; otherwise
// AppendReplaced panics. The gateway uses it to give a forwarded request an
// id of its own and to put the client's id back into the answer.
func AppendReplaced(dst, msg, part, repl []byte) []byte {
	off := cap(msg) - cap(part)
	if off < 0 || off+len(part) > len(msg) || len(part) == 0 || &msg[off] != &part[0] {
		panic("jsonrpc.AppendReplaced: part is not a subslice of msg")
	}
	dst = append(dst, msg[:off]...)
	dst = append(dst, repl...)
	return append(dst, msg[off+len(part):]...)
}
