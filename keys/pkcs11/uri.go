package pkcs11

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on PKCS#11 URIs and PIN sources. A URI comes from the command line
// or a configuration file; the PIN file is read once per token login.
const (
	// MaxURILength bounds the length of a pkcs11: URI in bytes.
	MaxURILength = 4096
	// MaxAttributeLength bounds one decoded URI attribute value (object
	// labels, paths) in bytes.
	MaxAttributeLength = 1024
	// MaxIDLength bounds a decoded CKA_ID in bytes.
	MaxIDLength = 128
	// MaxPINFileSize bounds a PIN file.
	MaxPINFileSize = 1024
)

// PKCS#11 fixed-size CK_TOKEN_INFO fields (PKCS#11 v2.40 §3.2): a URI
// attribute that is longer can never match and is rejected.
const (
	maxTokenLabel        = 32
	maxTokenManufacturer = 32
	maxTokenModel        = 16
	maxTokenSerial       = 16
)

// Environment variables.
const (
	// PINEnv is read for the user PIN when a URI has no pin-source
	// attribute. A URI can name another variable with pin-source=env:NAME.
	PINEnv = "AIRLOCK_HSM_PIN"
	// ModuleEnv names the PKCS#11 module (shared library) when a URI has no
	// module-path attribute.
	ModuleEnv = "AIRLOCK_PKCS11_MODULE"
)

// Errors callers branch on.
var (
	// ErrURI is wrapped by every URI parse error.
	ErrURI = errors.New("invalid pkcs11 URI")
	// ErrPINOnCommandLine is returned for a URI with pin-value: a PIN in a
	// URI ends up in shell history, process listings and logs.
	ErrPINOnCommandLine = fmt.Errorf("%w: pin-value is refused: PINs never go on the command line, use pin-source=file:PATH or pin-source=env:NAME", ErrURI)
	// ErrPIN is returned when no PIN is available or the token rejects it.
	ErrPIN = errors.New("pkcs11 PIN")
)

// URI is a parsed RFC 7512 PKCS#11 URI naming a token and, for key
// operations, a key object on it. Empty fields are absent from the URI.
type URI struct {
	// Token selection (RFC 7512 §2.3): CK_TOKEN_INFO label, manufacturerID,
	// model and serialNumber, and the slot ID.
	Token        string
	Manufacturer string
	Model        string
	Serial       string
	SlotID       *uint

	// Object selection: CKA_LABEL, CKA_ID, and the object class ("private",
	// "public"; RFC 7512 "type").
	Object string
	ID     []byte
	Type   string

	// ModulePath is the PKCS#11 module to load (query attribute
	// module-path).
	ModulePath string
	// PINSource is the pin-source query attribute: "file:PATH" or
	// "env:NAME".
	PINSource string
}

// path attribute name → whether it may be given; all others are refused.
var pathAttrs = map[string]bool{
	"token": true, "manufacturer": true, "model": true, "serial": true,
	"slot-id": true, "object": true, "id": true, "type": true,
}

// ParseURI parses a pkcs11: URI strictly (RFC 7512): only the attributes
// listed on URI, each at most once, characters outside the RFC's sets must
// be percent-encoded, percent-encoding must be exactly "%" and two hex
// digits, and string attributes must decode to UTF-8. pin-value is refused
// (ErrPINOnCommandLine); pin-source must be file:PATH or env:NAME.
func ParseURI(s string) (*URI, error) {
	if len(s) > MaxURILength {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrURI, MaxURILength)
	}
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("%w: does not start with \"pkcs11:\"", ErrURI)
	}
	path, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery && strings.Contains(query, "#") {
		return nil, fmt.Errorf("%w: fragments are not allowed", ErrURI)
	}
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("%w: path attribute %q is not name=value", ErrURI, attr)
			}
			if !pathAttrs[name] {
				return nil, fmt.Errorf("%w: unsupported path attribute %q", ErrURI, name)
			}
			if seen[name] {
				return nil, fmt.Errorf("%w: duplicate attribute %q", ErrURI, name)
			}
			seen[name] = true
			val, err := unescape(raw, isPathChar)
			if err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
			if err := u.setPath(name, val); err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
		}
	}
	if hasQuery {
		if query == "" {
			return nil, fmt.Errorf("%w: empty query", ErrURI)
		}
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("%w: query attribute %q is not name=value", ErrURI, attr)
			}
			if name == "pin-value" {
				return nil, ErrPINOnCommandLine
			}
			if seen["?"+name] {
				return nil, fmt.Errorf("%w: duplicate attribute %q", ErrURI, name)
			}
			seen["?"+name] = true
			val, err := unescape(raw, isQueryChar)
			if err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
			if err := u.setQuery(name, val); err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
		}
	}
	return u, nil
}

func (u *URI) setPath(name string, val []byte) error {
	if name == "id" {
		if len(val) == 0 || len(val) > MaxIDLength {
			return fmt.Errorf("id must be 1 to %d bytes", MaxIDLength)
		}
		u.ID = val
		return nil
	}
	str, err := text(val)
	if err != nil {
		return err
	}
	max := map[string]int{"token": maxTokenLabel, "manufacturer": maxTokenManufacturer, "model": maxTokenModel, "serial": maxTokenSerial}[name]
	if max > 0 && len(str) > max {
		return fmt.Errorf("longer than the %d bytes PKCS#11 allows", max)
	}
	switch name {
	case "token":
		u.Token = str
	case "manufacturer":
		u.Manufacturer = str
	case "model":
		u.Model = str
	case "serial":
		u.Serial = str
	case "object":
		u.Object = str
	case "type":
		if str != "private" && str != "public" {
			return fmt.Errorf("type %q is not a key type (want private or public)", str)
		}
		u.Type = str
	case "slot-id":
		if str == "" || strings.TrimLeft(str, "0123456789") != "" {
			return fmt.Errorf("slot-id %q is not a decimal number", str)
		}
		n, err := strconv.ParseUint(str, 10, 0)
		if err != nil {
			return fmt.Errorf("slot-id %q out of range", str)
		}
		id := uint(n)
		u.SlotID = &id
	}
	return nil
}

func (u *URI) setQuery(name string, val []byte) error {
	str, err := text(val)
	if err != nil {
		return err
	}
	switch name {
	case "module-path":
		if str == "" {
			return errors.New("empty module path")
		}
		u.ModulePath = str
	case "pin-source":
		if err := checkPINSource(str); err != nil {
			return err
		}
		u.PINSource = str
	case "module-name":
		return errors.New("module-name is not supported: give module-path")
	default:
		return fmt.Errorf("unsupported query attribute %q", name)
	}
	return nil
}

func text(val []byte) (string, error) {
	if len(val) > MaxAttributeLength {
		return "", fmt.Errorf("longer than %d bytes", MaxAttributeLength)
	}
	if !utf8.Valid(val) {
		return "", errors.New("not valid UTF-8")
	}
	for _, r := range string(val) {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("contains a control character")
		}
	}
	return string(val), nil
}

func checkPINSource(s string) error {
	if p, ok := strings.CutPrefix(s, "file:"); ok {
		if p == "" {
			return errors.New("pin-source file: has no path")
		}
		return nil
	}
	if name, ok := strings.CutPrefix(s, "env:"); ok {
		if !validEnvName(name) {
			return fmt.Errorf("pin-source env:%q is not a variable name", name)
		}
		return nil
	}
	return fmt.Errorf("pin-source %q must be file:PATH or env:NAME", s)
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar is RFC 7512 pk11-pchar without pct-encoded.
func isPathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(":[]@!$'()*+,=&", c) >= 0
}

// isQueryChar is RFC 7512 pk11-qchar without pct-encoded.
func isQueryChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(":[]@!$'()*+,=/?|;", c) >= 0
}

// unescape decodes percent-encoding, refusing characters outside allowed
// and malformed escapes.
func unescape(s string, allowed func(byte) bool) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return nil, fmt.Errorf("malformed percent-encoding at byte %d", i)
			}
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		if !allowed(c) {
			return nil, fmt.Errorf("character %q must be percent-encoded", c)
		}
		out = append(out, c)
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// escape percent-encodes every byte outside allowed.
func escape(b []byte, allowed func(byte) bool) string {
	var sb strings.Builder
	for _, c := range b {
		if allowed(c) && c != '%' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// String formats u as a pkcs11: URI that ParseURI accepts and that parses
// back to u. Characters are percent-encoded where RFC 7512 requires it;
// the id is always fully percent-encoded.
func (u *URI) String() string {
	var path []string
	add := func(name, v string) {
		if v != "" {
			path = append(path, name+"="+escape([]byte(v), pathValueChar))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("model", u.Model)
	add("serial", u.Serial)
	if u.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	add("object", u.Object)
	if len(u.ID) > 0 {
		path = append(path, "id="+escape(u.ID, func(byte) bool { return false }))
	}
	add("type", u.Type)
	var query []string
	if u.ModulePath != "" {
		query = append(query, "module-path="+escape([]byte(u.ModulePath), queryValueChar))
	}
	if u.PINSource != "" {
		query = append(query, "pin-source="+escape([]byte(u.PINSource), queryValueChar))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// Within a value, the separators of its own part must be escaped.
func pathValueChar(c byte) bool  { return isPathChar(c) && c != ';' && c != '?' }
func queryValueChar(c byte) bool { return isQueryChar(c) && c != '&' && c != '#' }

// readPIN returns the user PIN named by u: pin-source=file:PATH (first line
// of the file), pin-source=env:NAME, or else the PINEnv variable. ok is
// false when no PIN source is configured at all.
func (u *URI) readPIN() (pin string, ok bool, err error) {
	switch {
	case strings.HasPrefix(u.PINSource, "file:"):
		p := strings.TrimPrefix(u.PINSource, "file:")
		if strings.HasPrefix(p, "//") { // file:///abs/path (empty host only)
			if !strings.HasPrefix(p, "///") {
				return "", false, fmt.Errorf("%w: pin-source file URI with a host is not supported", ErrPIN)
			}
			p = p[2:]
		}
		pin, err := readPINFile(p)
		if err != nil {
			return "", false, err
		}
		return pin, true, nil
	case strings.HasPrefix(u.PINSource, "env:"):
		name := strings.TrimPrefix(u.PINSource, "env:")
		v, set := os.LookupEnv(name)
		if !set || v == "" {
			return "", false, fmt.Errorf("%w: pin-source names environment variable %s, which is not set", ErrPIN, name)
		}
		return v, true, nil
	}
	if v := os.Getenv(PINEnv); v != "" {
		return v, true, nil
	}
	return "", false, nil
}

func readPINFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: failed to open PIN file: %w", ErrPIN, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPINFileSize+1))
	if err != nil {
		return "", fmt.Errorf("%w: failed to read PIN file: %w", ErrPIN, err)
	}
	if len(data) > MaxPINFileSize {
		return "", fmt.Errorf("%w: PIN file is larger than %d bytes", ErrPIN, MaxPINFileSize)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%w: PIN file is empty", ErrPIN)
	}
	return line, nil
}
