package strictoml

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// kind is the TOML type of a parsed value.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindArray
	kindTable
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindInt:
		return "an integer"
	case kindBool:
		return "a boolean"
	case kindArray:
		return "an array"
	case kindTable:
		return "a table"
	}
	return "internal error: unknown kind"
}

// value is one parsed value and the line it starts on.
type value struct {
	kind kind
	line int
	str  string
	num  int64
	b    bool
	arr  []string
	tab  *table
}

// table is the root table or one [table]: keys in file order.
type table struct {
	name   string // "" for the root
	keys   []string
	vals   map[string]*value
	header int // line of the [table] header; 0 for the root
}

func newTable(name string, line int) *table {
	return &table{name: name, vals: map[string]*value{}, header: line}
}

// path is the dotted name of key in t, as BurntSushi/toml spells keys.
func (t *table) path(key string) string {
	if t.name == "" {
		return quoteKey(key)
	}
	return quoteKey(t.name) + "." + quoteKey(key)
}

type parser struct {
	data []byte
	pos  int
	line int
	root *table
	cur  *table
}

func (p *parser) errorf(format string, args ...any) error {
	return &Error{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// parse parses data (the subset of TOML 1.0 in the package doc) into a
// tree, refusing duplicate keys and tables.
func parse(data []byte) (*table, error) {
	p := &parser{data: data, line: 1, root: newTable("", 0)}
	p.cur = p.root
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, p.errorf("byte order mark: save the file as UTF-8 without a BOM")
	}
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			if r == '\n' {
				p.line++
			}
			i += n
		}
		return nil, p.errorf("invalid UTF-8")
	}
	for {
		p.skipSpace()
		if p.eof() {
			return p.root, nil
		}
		switch c := p.data[p.pos]; {
		case c == '#':
			if err := p.comment(); err != nil {
				return nil, err
			}
		case c == '\n' || c == '\r':
			if err := p.newline(); err != nil {
				return nil, err
			}
		case c == '[':
			if err := p.header(); err != nil {
				return nil, err
			}
			if err := p.endOfLine("table header"); err != nil {
				return nil, err
			}
		default:
			if err := p.keyValue(); err != nil {
				return nil, err
			}
			if err := p.endOfLine("value"); err != nil {
				return nil, err
			}
		}
	}
}

func (p *parser) eof() bool { return p.pos >= len(p.data) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.data[p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() && (p.data[p.pos] == ' ' || p.data[p.pos] == '\t') {
		p.pos++
	}
}

// newline consumes "\n" or "\r\n".
func (p *parser) newline() error {
	if p.peek() == '\r' {
		if p.pos+1 >= len(p.data) || p.data[p.pos+1] != '\n' {
			return p.errorf("carriage return without a line feed")
		}
		p.pos++
	}
	p.pos++
	p.line++
	return nil
}

// comment consumes a comment up to, not including, the end of the line.
func (p *parser) comment() error {
	p.pos++ // '#'
	for !p.eof() {
		c := p.data[p.pos]
		if c == '\n' || (c == '\r' && p.pos+1 < len(p.data) && p.data[p.pos+1] == '\n') {
			return nil
		}
		if isControl(c) {
			return p.errorf("control character %q in a comment", c)
		}
		p.pos++
	}
	return nil
}

// endOfLine accepts spaces, an optional comment and the end of the line.
func (p *parser) endOfLine(after string) error {
	p.skipSpace()
	switch c := p.peek(); {
	case p.eof():
		return nil
	case c == '#':
		if err := p.comment(); err != nil {
			return err
		}
		if p.eof() {
			return nil
		}
		return p.newline()
	case c == '\n' || c == '\r':
		return p.newline()
	default:
		return p.errorf("unexpected %q after the %s: one key = value or [table] per line", p.rest(), after)
	}
}

// rest is the remainder of the current line, shortened, for messages.
func (p *parser) rest() string {
	s := p.data[p.pos:]
	if i := bytes.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 20 {
		return string(s[:20]) + "…"
	}
	return string(s)
}

// isControl reports a control character TOML forbids outside escapes
// (every C0 control but tab, and DEL).
func isControl(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key parses a bare or quoted key.
func (p *parser) key() (string, error) {
	switch c := p.peek(); {
	case c == '"':
		return p.basicString()
	case c == '\'':
		return p.literalString()
	case isBare(c):
		start := p.pos
		for !p.eof() && isBare(p.data[p.pos]) {
			p.pos++
		}
		return string(p.data[start:p.pos]), nil
	case p.eof() || c == '\n' || c == '\r' || c == '#':
		return "", p.errorf("missing key")
	default:
		return "", p.errorf("expected a key, found %q", p.rest())
	}
}

func (p *parser) header() error {
	line := p.line
	p.pos++ // '['
	if p.peek() == '[' {
		return p.errorf("arrays of tables ([[...]]) are not supported")
	}
	p.skipSpace()
	name, err := p.key()
	if err != nil {
		return err
	}
	p.skipSpace()
	if p.peek() == '.' {
		return p.errorf("dotted table name [%s.…] is not supported: tables are one level deep", quoteKey(name))
	}
	if p.peek() != ']' {
		return p.errorf("expected ] after table name %s, found %q", quoteKey(name), p.rest())
	}
	p.pos++
	if prev, ok := p.root.vals[name]; ok {
		if prev.kind == kindTable {
			return p.errorf("duplicate table [%s]: it has already been defined on line %d", quoteKey(name), prev.line)
		}
		return p.errorf("table [%s] conflicts with key %s: it has already been defined on line %d", quoteKey(name), quoteKey(name), prev.line)
	}
	t := newTable(name, line)
	p.root.keys = append(p.root.keys, name)
	p.root.vals[name] = &value{kind: kindTable, line: line, tab: t}
	p.cur = t
	return nil
}

func (p *parser) keyValue() error {
	line := p.line
	k, err := p.key()
	if err != nil {
		return err
	}
	p.skipSpace()
	if p.peek() == '.' {
		return p.errorf("dotted key %s.… is not supported: use a [table]", quoteKey(k))
	}
	if p.peek() != '=' {
		return p.errorf("expected = after key %s, found %q", quoteKey(k), p.rest())
	}
	p.pos++
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return err
	}
	if prev, ok := p.cur.vals[k]; ok {
		return &Error{Line: line, Msg: fmt.Sprintf("duplicate key %s: it has already been defined on line %d", p.cur.path(k), prev.line)}
	}
	v.line = line
	p.cur.keys = append(p.cur.keys, k)
	p.cur.vals[k] = v
	return nil
}

func (p *parser) value() (*value, error) {
	switch c := p.peek(); {
	case c == '"':
		s, err := p.basicString()
		return &value{kind: kindString, str: s}, err
	case c == '\'':
		s, err := p.literalString()
		return &value{kind: kindString, str: s}, err
	case c == '[':
		a, err := p.array()
		return &value{kind: kindArray, arr: a}, err
	case c == '{':
		return nil, p.errorf("inline tables ({...}) are not supported: use a [table]")
	case p.eof() || c == '\n' || c == '\r' || c == '#':
		return nil, p.errorf("missing value: expected a value after =")
	}
	start := p.pos
	for !p.eof() && (isBare(p.data[p.pos]) || strings.IndexByte("+.:", p.data[p.pos]) >= 0) {
		p.pos++
	}
	tok := string(p.data[start:p.pos])
	switch tok {
	case "true", "false":
		return &value{kind: kindBool, b: tok == "true"}, nil
	case "":
		return nil, p.errorf("expected a value, found %q", p.rest())
	}
	if c := tok[0]; (c < '0' || c > '9') && c != '+' && c != '-' && tok != "inf" && tok != "nan" {
		return nil, p.errorf("expected a value (string, integer, boolean or array of strings), found %q", tok)
	}
	n, err := p.integer(tok)
	if err != nil {
		return nil, err
	}
	return &value{kind: kindInt, num: n}, nil
}

// integer parses a TOML integer: decimal with an optional sign and no
// leading zero, or 0x, 0o, 0b without a sign; underscores only between
// digits (TOML 1.0, "Integer").
func (p *parser) integer(tok string) (int64, error) {
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	switch {
	case strings.TrimLeft(tok, "+-") == "inf" || strings.TrimLeft(tok, "+-") == "nan":
		return 0, p.errorf("floating-point numbers are not supported: %q", tok)
	case strings.Contains(tok, ":") || len(tok) >= 5 && isDigit(tok[0]) && tok[4] == '-':
		return 0, p.errorf("dates and times are not supported: %q", tok)
	}
	base, digits := 10, tok
	if len(tok) > 2 && tok[0] == '0' {
		switch tok[1] {
		case 'x':
			base, digits = 16, tok[2:]
		case 'o':
			base, digits = 8, tok[2:]
		case 'b':
			base, digits = 2, tok[2:]
		}
	}
	if base == 10 && (strings.ContainsAny(tok, ".eE")) {
		return 0, p.errorf("floating-point numbers are not supported: %q", tok)
	}
	sign := ""
	if base == 10 && (digits[0] == '+' || digits[0] == '-') {
		sign, digits = digits[:1], digits[1:]
	}
	var clean strings.Builder
	prevDigit := false
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c == '_' {
			if !prevDigit || i == len(digits)-1 {
				return 0, p.errorf("invalid integer %q: an underscore must sit between digits", tok)
			}
			prevDigit = false
			continue
		}
		if _, err := strconv.ParseUint(string(c), base, 8); err != nil {
			return 0, p.errorf("invalid integer %q", tok)
		}
		clean.WriteByte(c)
		prevDigit = true
	}
	if clean.Len() == 0 {
		return 0, p.errorf("invalid integer %q", tok)
	}
	if base == 10 && len(digits) > 1 && digits[0] == '0' {
		return 0, p.errorf("invalid integer %q: leading zeros are not allowed", tok)
	}
	n, err := strconv.ParseInt(sign+clean.String(), base, 64)
	if err != nil {
		return 0, p.errorf("integer %q does not fit in 64 bits", tok)
	}
	return n, nil
}

// basicString parses a one-line "..." string with TOML's escapes.
func (p *parser) basicString() (string, error) {
	if bytes.HasPrefix(p.data[p.pos:], []byte(`"""`)) {
		return "", p.errorf(`multi-line strings ("""...""") are not supported`)
	}
	p.pos++
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\n' || c == '\r':
			return "", p.errorf("unterminated string: a string must end on its line")
		case isControl(c):
			return "", p.errorf("control character %q in a string: use an escape", c)
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// escape decodes one escape sequence (TOML 1.0, "String").
func (p *parser) escape(b *strings.Builder) error {
	p.pos++ // '\\'
	c := p.peek()
	p.pos++
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case '"':
		b.WriteByte('"')
	case '\\':
		b.WriteByte('\\')
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.data) {
			return p.errorf(`invalid escape \%c: want %d hex digits`, c, n)
		}
		hex := string(p.data[p.pos : p.pos+n])
		r, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || strings.ContainsAny(hex, "+-_") {
			return p.errorf(`invalid escape \%c%s: want %d hex digits`, c, hex, n)
		}
		if !utf8.ValidRune(rune(r)) || r > utf8.MaxRune {
			return p.errorf(`invalid escape \%c%s: not a Unicode scalar value`, c, hex)
		}
		p.pos += n
		b.WriteRune(rune(r))
	default:
		if c == 0 || c == '\n' || c == '\r' {
			return p.errorf(`invalid escape: \ at the end of the line (multi-line strings are not supported)`)
		}
		return p.errorf(`invalid escape \%s`, string(rune(c)))
	}
	return nil
}

// literalString parses a one-line '...' string: no escapes.
func (p *parser) literalString() (string, error) {
	if bytes.HasPrefix(p.data[p.pos:], []byte(`'''`)) {
		return "", p.errorf(`multi-line strings ('''...''') are not supported`)
	}
	p.pos++
	start := p.pos
	for {
		if p.eof() {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '\'':
			p.pos++
			return string(p.data[start : p.pos-1]), nil
		case c == '\n' || c == '\r':
			return "", p.errorf("unterminated string: a string must end on its line")
		case isControl(c):
			return "", p.errorf("control character %q in a string", c)
		}
		p.pos++
	}
}

// skipBlank skips spaces, newlines and comments inside an array.
func (p *parser) skipBlank() error {
	for {
		p.skipSpace()
		switch p.peek() {
		case '#':
			if err := p.comment(); err != nil {
				return err
			}
		case '\n', '\r':
			if err := p.newline(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// array parses an array of strings, which may span lines and end with a
// comma.
func (p *parser) array() ([]string, error) {
	p.pos++ // '['
	out := []string{}
	for {
		if err := p.skipBlank(); err != nil {
			return nil, err
		}
		var s string
		var err error
		switch c := p.peek(); {
		case c == ']':
			p.pos++
			return out, nil
		case c == '"':
			s, err = p.basicString()
		case c == '\'':
			s, err = p.literalString()
		case p.eof():
			return nil, p.errorf("unterminated array")
		case c == '[':
			return nil, p.errorf("nested arrays are not supported")
		default:
			return nil, p.errorf("only arrays of strings are supported, found %q", p.rest())
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if err := p.skipBlank(); err != nil {
			return nil, err
		}
		switch c := p.peek(); {
		case c == ',':
			p.pos++
		case c == ']':
			p.pos++
			return out, nil
		case p.eof():
			return nil, p.errorf("unterminated array")
		default:
			return nil, p.errorf("expected , or ] in the array, found %q", p.rest())
		}
	}
}
