// Package testwasm makes tiny WebAssembly modules for tests: WASI preview 1
// commands (they export _start and memory, import nothing) whose _start
// does nothing, told apart by a custom section so that each test can have
// modules, and hashes, of its own. Only tests import it.
package testwasm

// Header is the 8 bytes every WebAssembly binary starts with: the magic
// number and version 1.
const Header = "\x00asm\x01\x00\x00\x00"

// body is a command's sections after the header: one type () -> (), one
// function of it, one memory of one page, the exports _start and memory,
// and the function's empty body.
var body = []byte{
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: [func () -> ()]
	0x03, 0x02, 0x01, 0x00, // function: [type 0]
	0x05, 0x03, 0x01, 0x00, 0x01, // memory: [min 1 page]
	0x07, 0x13, 0x02, // export, 19 bytes, 2 entries
	0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // func 0
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, // memory 0
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: [no locals, end]
}

// Command returns a valid WASI command that does nothing; tag goes in a
// custom section named "anthill-test", so different tags give different
// bytes and hashes while compiling and running alike.
func Command(tag string) []byte {
	const name = "anthill-test"
	var custom []byte
	custom = uleb(custom, uint64(len(name)))
	custom = append(custom, name...)
	// Never empty: wazero refuses a custom section with no content.
	custom = append(custom, "tag="+tag...)
	b := append([]byte(Header), body...)
	b = append(b, 0x00) // custom section
	b = uleb(b, uint64(len(custom)))
	return append(b, custom...)
}

// uleb appends v in unsigned LEB128, WebAssembly's encoding of sizes.
func uleb(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
