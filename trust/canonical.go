package trust

import (
	"bytes"
	"fmt"

	"github.com/airlockfw/airlock/internal/canonjson"
)

// decodeStrict parses data as exactly one JSON value: valid UTF-8, no
// duplicate object keys, integers only, nesting at most MaxJSONDepth, nothing
// but whitespace after the value (canonjson.Parse). Objects become
// map[string]any, arrays []any, numbers json.Number.
func decodeStrict(data []byte) (any, error) {
	v, err := canonjson.Parse(data, MaxJSONDepth)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return v, nil
}

// signedPayload strictly parses a metadata document and returns the
// canonical bytes of its "signed" object: the exact bytes signatures cover.
// The vendor side signs the same encoding (canonjson.Marshal).
func signedPayload(data []byte) ([]byte, error) {
	v, err := decodeStrict(data)
	if err != nil {
		return nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: metadata is not a JSON object", ErrMalformed)
	}
	signed, ok := top["signed"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: missing \"signed\" object", ErrMalformed)
	}
	if _, ok := top["signatures"].([]any); !ok {
		return nil, fmt.Errorf("%w: missing \"signatures\" array", ErrMalformed)
	}
	var buf bytes.Buffer
	if err := canonjson.Encode(&buf, signed); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
