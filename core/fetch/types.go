package fetch

type kind uint8

const (
	kindUnsigned kind = iota // u8..u64 and bitfields: decimal
	kindSigned               // s8..s64: signed decimal
	kindHex                  // x8..x64: 0x%x
	kindString               // string, ustring: "..." or (fault)
	kindSymbol               // symbol: sym+0xoff, or 0x%x
	kindChar                 // char: the byte itself (%c)
)

// typeInfo is a fetch type (trace_probe.c, probe_fetch_types).
type typeInfo struct {
	name string
	kind kind
	size uint8 // bytes stored: 1, 2, 4, 8 (8 for symbol; 0 for strings)
	// bitfield: b<width>@<offset>/<container>, an unsigned container
	// shifted left by lshift then right by rshift (in size*8 bits).
	bitfield       bool
	lshift, rshift uint8
}

var basicTypes = map[string]typeInfo{
	"u8": {kind: kindUnsigned, size: 1}, "u16": {kind: kindUnsigned, size: 2},
	"u32": {kind: kindUnsigned, size: 4}, "u64": {kind: kindUnsigned, size: 8},
	"s8": {kind: kindSigned, size: 1}, "s16": {kind: kindSigned, size: 2},
	"s32": {kind: kindSigned, size: 4}, "s64": {kind: kindSigned, size: 8},
	"x8": {kind: kindHex, size: 1}, "x16": {kind: kindHex, size: 2},
	"x32": {kind: kindHex, size: 4}, "x64": {kind: kindHex, size: 8},
	"string": {kind: kindString}, "ustring": {kind: kindString},
	"symbol": {kind: kindSymbol, size: 8}, "char": {kind: kindChar, size: 1},
}

// DefaultType is the type of an argument written without one: tracefs's
// DEFAULT_FETCH_TYPE on a 64-bit kernel.
const DefaultType = "x64"

// lookupType is find_fetch_type: "" is the default type; a bitfield's
// container (after its '/') must be 8, 16, 32 or 64 (its other parts are
// checked by parseBitfield).
func lookupType(name string) (typeInfo, bool) {
	if name == "" {
		name = DefaultType
	}
	if name[0] == 'b' {
		slash := -1
		for i := 0; i < len(name); i++ {
			if name[i] == '/' {
				slash = i
				break
			}
		}
		if slash < 0 {
			return typeInfo{}, false
		}
		bits, ok := kstrtoull(name[slash+1:], 0)
		if !ok || (bits != 8 && bits != 16 && bits != 32 && bits != 64) {
			return typeInfo{}, false
		}
		return typeInfo{name: name, kind: kindUnsigned, size: uint8(bits / 8), bitfield: true}, true
	}
	t, ok := basicTypes[name]
	t.name = name
	return t, ok
}
