package manager

import "strings"

// Escaping of what comes from outside (paths, names, locations, reasons
// that embed them) in the lines of the errors, probes and status files, so
// that one entry is always one line and its fields stay separable:
//
//   - EscapeField, for a space-separated field (PATH, NAME, LOCATION):
//     backslash, space and every control byte (0x00-0x1f, 0x7f) become
//     \ooo, three octal digits, as /proc/mounts writes "\040" for a space.
//   - EscapeText, for prose that ends a line (a reason): the same, but
//     spaces stay.
//
// Bytes from 0x80 up pass through unchanged, as in /proc/mounts. Unescape
// reverses both.

// EscapeField escapes s for a space-separated field of a listing line.
func EscapeField(s string) string { return escape(s, true) }

// EscapeText escapes s for the free text that ends a line (a reason).
func EscapeText(s string) string { return escape(s, false) }

func needsEscape(c byte, space bool) bool {
	return c < ' ' || c == 0x7f || c == '\\' || (space && c == ' ')
}

func escape(s string, space bool) string {
	i := 0
	for i < len(s) && !needsEscape(s[i], space) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if !needsEscape(c, space) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('\\')
		b.WriteByte('0' + c>>6)
		b.WriteByte('0' + (c>>3)&7)
		b.WriteByte('0' + c&7)
	}
	return b.String()
}

// Unescape reverses EscapeField and EscapeText: every "\ooo" becomes the
// byte it names; anything else is kept as it is.
func Unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
