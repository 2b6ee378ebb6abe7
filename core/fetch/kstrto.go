package fetch

// Number parsing with the rules of the kernel's lib/kstrtox.c, which the
// tracefs fetch-argument parser uses: kstrtoul and kstrtol for whole tokens,
// simple_strtoul for the prefixes of a bitfield type.

// kstrtoull parses all of s as _kstrtoull does: an optional '+', then with
// base 0 "0x"/"0X" followed by a hex digit means hex, another leading '0'
// octal, anything else decimal; base 16 skips a "0x". At least one digit,
// no trailing characters, no overflow.
func kstrtoull(s string, base int) (uint64, bool) {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	base, s = fixupRadix(s, base)
	v, n, ok := parseDigits(s, base)
	return v, ok && n > 0 && n == len(s)
}

// kstrtoll parses all of s as kstrtoll does: a leading '-' negates the
// rest, which may not have a '+' of its own (_kstrtoull); the result must
// fit an int64.
func kstrtoll(s string, base int) (int64, bool) {
	if len(s) > 0 && s[0] == '-' {
		if len(s) > 1 && s[1] == '+' {
			return 0, false
		}
		u, ok := kstrtoull(s[1:], base)
		if !ok || u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	u, ok := kstrtoull(s, base)
	if !ok || u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// simpleStrtoul parses the longest number at the start of s as
// simple_strtoul(s, &end, 0) does (no sign), returning it and the rest.
// With no digit it returns 0 and s unchanged.
func simpleStrtoul(s string) (uint64, string) {
	base, t := fixupRadix(s, 0)
	v, n, _ := parseDigits(t, base)
	if n == 0 {
		return 0, s
	}
	return v, t[n:]
}

// fixupRadix is _parse_integer_fixup_radix, plus its caller's skipping of
// the "0x" of a hex number.
func fixupRadix(s string, base int) (int, string) {
	if base == 0 {
		switch {
		case len(s) > 0 && s[0] == '0' && len(s) > 2 && s[1]|0x20 == 'x' && digitVal(s[2]) < 16:
			base = 16
		case len(s) > 0 && s[0] == '0':
			base = 8
		default:
			base = 10
		}
	}
	if base == 16 && len(s) >= 2 && s[0] == '0' && s[1]|0x20 == 'x' {
		s = s[2:]
	}
	return base, s
}

// parseDigits parses the digits of base at the start of s: the value, how
// many bytes were digits, and false on overflow.
func parseDigits(s string, base int) (uint64, int, bool) {
	var v uint64
	b := uint64(base)
	for i := 0; i < len(s); i++ {
		d := uint64(digitVal(s[i]))
		if d >= b {
			return v, i, true
		}
		if v > (^uint64(0)-d)/b {
			return 0, i, false
		}
		v = v*b + d
	}
	return v, len(s), true
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return 99
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
