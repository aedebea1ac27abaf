package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/verity"
)

// Schema limits and defaults. docs/release-metadata.md documents each one.
const (
	// SchemaVersion is the newest value of the "schema" field this package
	// accepts and the one new releases are signed with. A change that old
	// devices must not misread bumps it. Schema 2 adds the block index
	// ("index"); schema 1 releases are still accepted.
	SchemaVersion = 2
	// SchemaV1 is the first schema: the payload is the installed image
	// (optionally zstd-compressed), checked by its whole-file digests.
	SchemaV1 = 1
	// CustomKey is the key of the Airlock metadata in a TUF target's custom
	// field. Other top-level keys belong to other tools and are ignored.
	CustomKey = "airlock"
	// MaxCustomSize is the largest custom field ParseCustom reads, in bytes.
	MaxCustomSize = 16 << 10
	// MaxModels is the largest number of device models of one release.
	MaxModels = 16
	// MaxModelLength is the longest model name, in bytes.
	MaxModelLength = 64
	// MaxChannelLength is the longest channel name, in bytes.
	MaxChannelLength = 32
	// MaxNotesSize is the largest release notes text, in bytes.
	MaxNotesSize = 1024
	// DefaultChannel is the channel of a release or device that names none.
	DefaultChannel = "stable"
)

var (
	// ErrInvalidMetadata is wrapped by every error of ParseCustom, Validate
	// and MarshalCustom.
	ErrInvalidMetadata = errors.New("invalid release metadata")
	// ErrNoMetadata means the custom field has no "airlock" member: the
	// target is not an Airlock release (it may belong to another tool).
	ErrNoMetadata = errors.New("no airlock release metadata in the target's custom field")
	// ErrUnsupportedSchema means the metadata uses a schema version this
	// build does not know. The device must not guess: it skips the release.
	ErrUnsupportedSchema = errors.New("unsupported schema")
	// ErrUnknownField means a key the schema does not define.
	ErrUnknownField = errors.New("unknown field")
	// ErrMissingField means a required key is absent.
	ErrMissingField = errors.New("missing required field")
	// ErrTargetMismatch means the target path disagrees with the metadata
	// about the product or version.
	ErrTargetMismatch = errors.New("target path does not match release metadata")
)

// FieldError is a validation failure of one metadata field. It wraps both
// ErrInvalidMetadata and the cause (for example ErrInvalidVersion).
type FieldError struct {
	Field string // JSON path, e.g. "models[2]" or "installed.sha256"
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: field %q: %v", ErrInvalidMetadata, e.Field, e.Err)
}

// Unwrap returns ErrInvalidMetadata and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalidMetadata, e.Err} }

// InstallKind is how the payload is installed into the inactive slot.
type InstallKind string

// InstallRaw writes the (decompressed) payload byte for byte into the slot.
// It is the only kind schema 1 defines.
const InstallRaw InstallKind = "raw"

// Compression is how the payload is compressed on the wire.
type Compression string

// The compressions schema 1 defines.
const (
	CompressionNone Compression = "none"
	CompressionZstd Compression = "zstd"
)

// Install says how a device installs the payload.
type Install struct {
	Kind        InstallKind // only InstallRaw
	Compression Compression // CompressionNone or CompressionZstd
}

// Installed describes the image as it lands in the slot, after
// decompression: what the install pipeline checks at the end of the stream
// and what verified boot re-checks before running the slot.
type Installed struct {
	Length int64             // bytes, > 0
	SHA256 [sha256.Size]byte // SHA-256 of those bytes, not all zero
}

// Metadata is the Airlock firmware metadata of one release, carried in the
// TUF target's custom field as {"airlock": {...}}. See
// docs/release-metadata.md for the meaning of every field.
type Metadata struct {
	Schema          int          // must be SchemaVersion
	Product         Product      // must match the target path
	Models          []string     // 1 to MaxModels device models
	HWRev           HWRange      // zero: any hardware revision
	Version         Version      // must match the target path
	SecurityVersion uint32       // anti-rollback epoch
	Channel         string       // "" means DefaultChannel
	Depends         []Dependency // at most MaxDepends
	Install         Install
	Installed       Installed
	Created         time.Time // zero: absent; marshaled in UTC
	Notes           string    // at most MaxNotesSize bytes
	AllowDowngrade  bool      // signed permission to reinstall or downgrade
	Environment     string    // "", "dev", "staging" or "prod": the trust environment it was signed for
	// Index is the signed block index of a schema 2 release: the payload
	// starts with a hash tree (and, compressed, a frame table) against
	// which every block is verified before it is written. Nil in schema 1.
	Index *Index
	// Deltas are the signed delta streams that rebuild this release's
	// image from an older release's (schema 2 only; at most MaxDeltas).
	Deltas []Delta
	// Provenance binds the release's build provenance (a DSSE envelope
	// served beside the release); nil: the release has none.
	Provenance *Provenance
}

// MaxProvenanceLength bounds the provenance envelope a release binds, in
// bytes (provenance.MaxEnvelopeSize).
const MaxProvenanceLength = 1 << 20

// Provenance is the digest and length of a release's provenance envelope
// file, served at targets/PRODUCT/VERSION/<SHA256>.provenance.json.
type Provenance struct {
	SHA256 [sha256.Size]byte
	Length int64
}

// MaxDeltas bounds the deltas one release signs.
const MaxDeltas = 8

// Delta is a signed delta (docs/delta-format.md) that rebuilds the
// release's slot contents from release From's: a device running From may
// install the release from a delta bundle. It is two delta streams, one
// after the other: Tree rebuilds the release's hash tree from From's tree
// (the device verifies it against the signed root as it is rebuilt, before
// any image block is written), Data rebuilds the image from From's image.
type Delta struct {
	From Version
	Tree DeltaStream
	Data DeltaStream
}

// DeltaStream is one signed delta stream: Length bytes, whose header of
// HeaderLength bytes has the SHA-256 HeaderSHA256 and carries the SHA-256 of
// every window, so that every byte is checked before it is used.
type DeltaStream struct {
	Length       int64
	HeaderLength int64
	HeaderSHA256 [sha256.Size]byte
}

// Length is the payload length of a delta bundle carrying d.
func (d *Delta) Length() int64 { return d.Tree.Length + d.Data.Length }

// The block index limits. docs/release-metadata.md, "Block index".
const (
	// IndexHash is the only hash algorithm of the tree (dm-verity's name).
	IndexHash = verity.Algorithm
	// IndexBlockSize is the only data and hash block size.
	IndexBlockSize = verity.BlockSize
	// MaxSaltSize is dm-verity's salt limit, in bytes.
	MaxSaltSize = verity.MaxSaltSize
	// MinFrameSize and MaxFrameSize bound the installed bytes of one zstd
	// frame of a compressed schema 2 payload (a multiple of
	// IndexBlockSize): a device holds one compressed and one decompressed
	// frame in memory per pipeline stage.
	MinFrameSize = 64 << 10
	MaxFrameSize = 4 << 20
	// FrameEntrySize is the size of one frame table entry: the frame's
	// compressed length (8 bytes, big endian) and its SHA-256.
	FrameEntrySize = 8 + sha256.Size
	// MaxIndexBlocks bounds the data blocks of an indexed image (64 GiB).
	MaxIndexBlocks = verity.MaxDataBlocks
	// MaxFrames bounds the frames of a compressed schema 2 payload (a
	// device holds the frame table: 640 KiB); payload.MaxFrames.
	MaxFrames = 16384
	// MaxDeltaHeaderSize and MaxDeltaLength bound a signed delta stream's
	// header (delta.MaxHeaderSize) and length (the 64 GiB transport limit).
	MaxDeltaHeaderSize = 1 << 20
	MaxDeltaLength     = 64 << 30
)

// Index is the signed block index of a schema 2 release. The payload file
// is the tree (TreeLength bytes, dm-verity format 1 without superblock,
// top level first), then, for a zstd payload, the frame table (Frames
// entries of FrameEntrySize bytes), then the data: the installed image's
// blocks (the last one zero-padded to IndexBlockSize), or the zstd frames,
// each an independent frame holding FrameSize installed bytes (the last one
// the rest).
type Index struct {
	Salt       []byte            // 0 to MaxSaltSize bytes
	Root       [sha256.Size]byte // the dm-verity root hash
	TreeLength int64             // bytes of tree at the start of the payload
	// FrameSize, Frames and FrameTable describe a zstd payload's frames
	// (zero for an uncompressed payload): installed bytes per frame, how
	// many, and the SHA-256 of the frame table.
	FrameSize  int64
	Frames     int64
	FrameTable [sha256.Size]byte
}

// DataBlocks is the number of IndexBlockSize blocks the installed image
// covers (the last one zero-padded).
func (m *Metadata) DataBlocks() int64 { return verity.BlocksFor(m.Installed.Length) }

// TreeLength is the size in bytes of the dm-verity tree (format 1, 4 KiB
// blocks, SHA-256) over blocks data blocks: 0 for one block (and for a
// number of blocks package verity refuses).
func TreeLength(blocks int64) int64 {
	return verity.Params{DataBlockSize: verity.BlockSize, HashBlockSize: verity.BlockSize, DataBlocks: blocks}.TreeSize()
}

// SlotLength is what the installed release occupies in a slot: the image,
// and for schema 2 its last block's padding and the tree after it (at
// HashOffset, as `veritysetup --hash-offset` expects it).
func (m *Metadata) SlotLength() int64 {
	if m.Index == nil {
		return m.Installed.Length
	}
	return m.HashOffset() + m.Index.TreeLength
}

// HashOffset is where a schema 2 release's tree is stored in its slot: the
// end of the image's last block.
func (m *Metadata) HashOffset() int64 { return m.DataBlocks() * IndexBlockSize }

// FrameCount is the number of frames of frameSize installed bytes that
// hold length bytes.
func FrameCount(length, frameSize int64) int64 {
	if frameSize <= 0 {
		return 0
	}
	return (length + frameSize - 1) / frameSize
}

// PayloadDataOffset is where the data starts in a schema 2 payload file:
// after the tree and the frame table.
func (m *Metadata) PayloadDataOffset() int64 {
	if m.Index == nil {
		return 0
	}
	return m.Index.TreeLength + m.Index.Frames*FrameEntrySize
}

// ChannelOrDefault returns the release channel, DefaultChannel if unset.
func (m *Metadata) ChannelOrDefault() string {
	if m.Channel == "" {
		return DefaultChannel
	}
	return m.Channel
}

// Validate checks every rule of the schema that the Go types do not already
// guarantee. It returns a *FieldError for the first field that fails.
func (m *Metadata) Validate() error {
	if m == nil {
		return fmt.Errorf("%w: nil", ErrInvalidMetadata)
	}
	fe := func(field string, format string, args ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if m.Schema != SchemaV1 && m.Schema != SchemaVersion {
		return fe("schema", "%w %d, this build supports %d and %d", ErrUnsupportedSchema, m.Schema, SchemaV1, SchemaVersion)
	}
	if m.Product.IsZero() {
		return fe("product", "%w", ErrMissingField)
	}
	if len(m.Models) == 0 || len(m.Models) > MaxModels {
		return fe("models", "%d models, want 1 to %d", len(m.Models), MaxModels)
	}
	for i, model := range m.Models {
		if !isName(model, MaxModelLength) {
			return fe(fmt.Sprintf("models[%d]", i), "%q does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", model)
		}
		if slices.Contains(m.Models[:i], model) {
			return fe(fmt.Sprintf("models[%d]", i), "duplicate model %q", model)
		}
	}
	if m.Version.IsZero() {
		return fe("version", "%w", ErrMissingField)
	}
	if m.Channel != "" && !isChannel(m.Channel) {
		return fe("channel", "%q does not match ^[a-z0-9][a-z0-9-]{0,31}$", m.Channel)
	}
	if len(m.Depends) > MaxDepends {
		return fe("depends", "%d dependencies, the limit is %d", len(m.Depends), MaxDepends)
	}
	for i, d := range m.Depends {
		field := fmt.Sprintf("depends[%d]", i)
		if err := d.validate(); err != nil {
			return &FieldError{Field: field, Err: err}
		}
		if d.Component == m.Product.String() {
			return fe(field, "%w: release depends on its own product %q", ErrInvalidDependency, d.Component)
		}
		for _, prev := range m.Depends[:i] {
			if prev.Component == d.Component {
				return fe(field, "%w: duplicate component %q", ErrInvalidDependency, d.Component)
			}
		}
	}
	if m.Install.Kind != InstallRaw {
		return fe("install.kind", "unsupported install kind %q (schema %d supports %q)", m.Install.Kind, SchemaVersion, InstallRaw)
	}
	if m.Install.Compression != CompressionNone && m.Install.Compression != CompressionZstd {
		return fe("install.compression", "unsupported compression %q (want %q or %q)", m.Install.Compression, CompressionNone, CompressionZstd)
	}
	if m.Installed.Length <= 0 {
		return fe("installed.length", "%d, want > 0", m.Installed.Length)
	}
	if m.Installed.SHA256 == [sha256.Size]byte{} {
		return fe("installed.sha256", "all zero (unset)")
	}
	if err := m.validateIndex(); err != nil {
		return err
	}
	if err := m.validateDeltas(); err != nil {
		return err
	}
	if !m.Created.IsZero() {
		if y := m.Created.UTC().Year(); y < 0 || y > 9999 {
			return fe("created", "year %d is outside 0000 to 9999", y)
		}
	}
	if len(m.Notes) > MaxNotesSize {
		return fe("notes", "%d bytes, the limit is %d", len(m.Notes), MaxNotesSize)
	}
	if !utf8.ValidString(m.Notes) {
		return fe("notes", "not valid UTF-8")
	}
	for _, r := range m.Notes {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fe("notes", "control character %U (only newline and tab are allowed)", r)
		}
	}
	if m.Environment != "" && ValidEnvironment(m.Environment) != nil {
		return fe("environment", "%q is not dev, staging or prod", m.Environment)
	}
	if p := m.Provenance; p != nil {
		if p.Length <= 0 || p.Length > MaxProvenanceLength {
			return fe("provenance.length", "%d, want 1 to %d", p.Length, MaxProvenanceLength)
		}
		if p.SHA256 == [sha256.Size]byte{} {
			return fe("provenance.sha256", "all zero (unset)")
		}
	}
	return nil
}

func (m *Metadata) validateIndex() error {
	x := m.Index
	switch {
	case m.Schema == SchemaV1 && x != nil:
		return &FieldError{Field: "index", Err: fmt.Errorf("%w: schema 1 has no block index", ErrUnknownField)}
	case m.Schema == SchemaV1:
		return nil
	case x == nil:
		return &FieldError{Field: "index", Err: ErrMissingField}
	}
	fe := func(field string, format string, args ...any) error {
		return &FieldError{Field: "index." + field, Err: fmt.Errorf(format, args...)}
	}
	if m.Installed.Length > MaxIndexBlocks*IndexBlockSize {
		return &FieldError{Field: "installed.length", Err: fmt.Errorf("%d bytes, an indexed image has at most %d", m.Installed.Length, int64(MaxIndexBlocks*IndexBlockSize))}
	}
	blocks := m.DataBlocks()
	if blocks > MaxIndexBlocks {
		return &FieldError{Field: "installed.length", Err: fmt.Errorf("%d blocks of %d bytes, an indexed image has at most %d", blocks, IndexBlockSize, MaxIndexBlocks)}
	}
	if len(x.Salt) > MaxSaltSize {
		return fe("salt", "%d bytes, the limit is %d", len(x.Salt), MaxSaltSize)
	}
	if x.Root == [sha256.Size]byte{} {
		return fe("root", "all zero (unset)")
	}
	if want := TreeLength(blocks); x.TreeLength != want {
		return fe("tree_length", "%d, the tree over %d blocks is %d bytes", x.TreeLength, blocks, want)
	}
	if m.Install.Compression != CompressionZstd {
		if x.FrameSize != 0 || x.Frames != 0 || x.FrameTable != [sha256.Size]byte{} {
			return fe("frames", "%w: an uncompressed payload has no frames", ErrUnknownField)
		}
		return nil
	}
	switch {
	case x.FrameSize < MinFrameSize || x.FrameSize > MaxFrameSize || x.FrameSize%IndexBlockSize != 0:
		return fe("frames.size", "%d, want a multiple of %d from %d to %d", x.FrameSize, IndexBlockSize, MinFrameSize, MaxFrameSize)
	case x.Frames > MaxFrames:
		return fe("frames.count", "%d, the limit is %d: use larger frames", x.Frames, MaxFrames)
	case x.Frames != FrameCount(m.Installed.Length, x.FrameSize):
		return fe("frames.count", "%d, %d installed bytes make %d frames of %d", x.Frames, m.Installed.Length, FrameCount(m.Installed.Length, x.FrameSize), x.FrameSize)
	case x.FrameTable == [sha256.Size]byte{}:
		return fe("frames.sha256", "all zero (unset)")
	}
	return nil
}

func (m *Metadata) validateDeltas() error {
	if len(m.Deltas) == 0 {
		return nil
	}
	if m.Index == nil {
		return &FieldError{Field: "deltas", Err: fmt.Errorf("%w: deltas need the block index of schema 2", ErrUnknownField)}
	}
	if len(m.Deltas) > MaxDeltas {
		return &FieldError{Field: "deltas", Err: fmt.Errorf("%d deltas, the limit is %d", len(m.Deltas), MaxDeltas)}
	}
	for i, d := range m.Deltas {
		fe := func(field, format string, args ...any) error {
			return &FieldError{Field: fmt.Sprintf("deltas[%d].%s", i, field), Err: fmt.Errorf(format, args...)}
		}
		switch {
		case d.From.IsZero():
			return fe("from", "%w", ErrMissingField)
		case d.From.String() == m.Version.String():
			return fe("from", "a delta from the release itself")
		}
		for _, st := range []struct {
			name string
			s    DeltaStream
		}{{"tree", d.Tree}, {"data", d.Data}} {
			switch {
			case st.s.HeaderLength <= 0 || st.s.HeaderLength > MaxDeltaHeaderSize:
				return fe(st.name+".header_length", "%d, want 1 to %d", st.s.HeaderLength, MaxDeltaHeaderSize)
			case st.s.Length < st.s.HeaderLength || st.s.Length > MaxDeltaLength:
				return fe(st.name+".length", "%d bytes with a %d-byte header, the limit is %d", st.s.Length, st.s.HeaderLength, int64(MaxDeltaLength))
			case st.s.HeaderSHA256 == [sha256.Size]byte{}:
				return fe(st.name+".header_sha256", "all zero (unset)")
			}
		}
		for _, prev := range m.Deltas[:i] {
			if prev.From.String() == d.From.String() {
				return fe("from", "duplicate delta from %s", d.From)
			}
		}
	}
	return nil
}

// DeltaFrom returns the signed delta from version from, nil if none.
func (m *Metadata) DeltaFrom(from string) *Delta {
	for i := range m.Deltas {
		if m.Deltas[i].From.String() == from {
			return &m.Deltas[i]
		}
	}
	return nil
}

// Trust environments: separate roots, separate keys. This is the one
// definition; keys, repo, device and server refer to it.
const (
	EnvDev     = "dev"
	EnvStaging = "staging"
	EnvProd    = "prod"
)

// Environments lists the valid environment names.
var Environments = []string{EnvDev, EnvStaging, EnvProd}

// RootEnvironmentField is the field of the signed root metadata that names
// the repository's trust environment (TUF keeps unrecognized fields).
const RootEnvironmentField = "x-airlock-environment"

// ValidEnvironment validates an environment name.
func ValidEnvironment(env string) error {
	for _, e := range Environments {
		if env == e {
			return nil
		}
	}
	return fmt.Errorf("unknown environment %q (want dev, staging or prod)", env)
}

func isChannel(s string) bool {
	if len(s) > MaxChannelLength {
		return false
	}
	return isProductSegment(s)
}

// The JSON form of Metadata. Field names here are the schema.
type wireMetadata struct {
	Schema          int              `json:"schema"`
	Product         string           `json:"product"`
	Models          []string         `json:"models"`
	HWRev           string           `json:"hw_rev,omitempty"`
	Version         string           `json:"version"`
	SecurityVersion uint32           `json:"security_version"`
	Channel         string           `json:"channel,omitempty"`
	Depends         []wireDependency `json:"depends,omitempty"`
	Install         wireInstall      `json:"install"`
	Installed       wireInstalled    `json:"installed"`
	Created         string           `json:"created,omitempty"`
	Notes           string           `json:"notes,omitempty"`
	AllowDowngrade  bool             `json:"allow_downgrade,omitempty"`
	Environment     string           `json:"environment,omitempty"`
	Index           *wireIndex       `json:"index,omitempty"`
	Deltas          []wireDelta      `json:"deltas,omitempty"`
	Provenance      *wireProvenance  `json:"provenance,omitempty"`
}

type wireProvenance struct {
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}

type wireDelta struct {
	From string          `json:"from"`
	Tree wireDeltaStream `json:"tree"`
	Data wireDeltaStream `json:"data"`
}

type wireDeltaStream struct {
	Length       int64  `json:"length"`
	HeaderLength int64  `json:"header_length"`
	HeaderSHA256 string `json:"header_sha256"`
}

func (s DeltaStream) wire() wireDeltaStream {
	return wireDeltaStream{Length: s.Length, HeaderLength: s.HeaderLength, HeaderSHA256: hex.EncodeToString(s.HeaderSHA256[:])}
}

func (w wireDeltaStream) stream(field string) (DeltaStream, error) {
	out := DeltaStream{Length: w.Length, HeaderLength: w.HeaderLength}
	if !isLowerHex(w.HeaderSHA256, 2*sha256.Size) {
		return out, &FieldError{Field: field + ".header_sha256", Err: fmt.Errorf("want %d lowercase hex digits, got %q", 2*sha256.Size, w.HeaderSHA256)}
	}
	hex.Decode(out.HeaderSHA256[:], []byte(w.HeaderSHA256))
	return out, nil
}

type wireIndex struct {
	Hash       string      `json:"hash"`
	BlockSize  int         `json:"block_size"`
	Salt       string      `json:"salt"`
	Root       string      `json:"root"`
	TreeLength int64       `json:"tree_length"`
	Frames     *wireFrames `json:"frames,omitempty"`
}

type wireFrames struct {
	Size   int64  `json:"size"`
	Count  int64  `json:"count"`
	SHA256 string `json:"sha256"`
}

type wireDependency struct {
	Component  string `json:"component"`
	MinVersion string `json:"min_version"`
}

type wireInstall struct {
	Kind        string `json:"kind"`
	Compression string `json:"compression"`
}

type wireInstalled struct {
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// Exact key sets of each JSON object of the schema.
var (
	metadataRequired   = []string{"schema", "product", "models", "version", "security_version", "install", "installed"}
	metadataOptional   = []string{"hw_rev", "channel", "depends", "created", "notes", "allow_downgrade", "environment", "provenance"}
	metadataOptional2  = append(slices.Clip(metadataOptional), "index", "deltas") // schema 2: "index" is required by Validate
	deltaRequired      = []string{"from", "tree", "data"}
	streamRequired     = []string{"length", "header_length", "header_sha256"}
	provenanceRequired = []string{"sha256", "length"}
	indexRequired      = []string{"hash", "block_size", "salt", "root", "tree_length"}
	indexOptional      = []string{"frames"}
	framesRequired     = []string{"size", "count", "sha256"}
	dependencyRequired = []string{"component", "min_version"}
	installRequired    = []string{"kind", "compression"}
	installedRequired  = []string{"length", "sha256"}
)

// MarshalCustom validates m and returns the value of a TUF target's custom
// field: {"airlock":{...}}, compact, without HTML escaping, with the channel
// always written and created in UTC.
func MarshalCustom(m *Metadata) (json.RawMessage, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wireMetadata{
		Schema:          m.Schema,
		Product:         m.Product.String(),
		Models:          m.Models,
		HWRev:           m.HWRev.String(),
		Version:         m.Version.String(),
		SecurityVersion: m.SecurityVersion,
		Channel:         m.ChannelOrDefault(),
		Install:         wireInstall{Kind: string(m.Install.Kind), Compression: string(m.Install.Compression)},
		Installed:       wireInstalled{Length: m.Installed.Length, SHA256: hex.EncodeToString(m.Installed.SHA256[:])},
		Notes:           m.Notes,
		AllowDowngrade:  m.AllowDowngrade,
		Environment:     m.Environment,
	}
	if x := m.Index; x != nil {
		w.Index = &wireIndex{Hash: IndexHash, BlockSize: IndexBlockSize, Salt: hex.EncodeToString(x.Salt),
			Root: hex.EncodeToString(x.Root[:]), TreeLength: x.TreeLength}
		if x.Frames != 0 {
			w.Index.Frames = &wireFrames{Size: x.FrameSize, Count: x.Frames, SHA256: hex.EncodeToString(x.FrameTable[:])}
		}
	}
	for _, d := range m.Deltas {
		w.Deltas = append(w.Deltas, wireDelta{From: d.From.String(), Tree: d.Tree.wire(), Data: d.Data.wire()})
	}
	if p := m.Provenance; p != nil {
		w.Provenance = &wireProvenance{SHA256: hex.EncodeToString(p.SHA256[:]), Length: p.Length}
	}
	for _, d := range m.Depends {
		w.Depends = append(w.Depends, wireDependency{Component: d.Component, MinVersion: d.MinVersion.String()})
	}
	if !m.Created.IsZero() {
		w.Created = m.Created.UTC().Format(time.RFC3339Nano)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]wireMetadata{CustomKey: w}); err != nil {
		return nil, fmt.Errorf("%w: failed to encode: %w", ErrInvalidMetadata, err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) > MaxCustomSize {
		return nil, fmt.Errorf("%w: encoded size %d bytes exceeds MaxCustomSize %d", ErrInvalidMetadata, len(out), MaxCustomSize)
	}
	return out, nil
}

// ParseCustom parses the custom field of a TUF target (untrusted bytes, even
// after signature verification: the signer may be compromised or buggy).
//
// It rejects input over MaxCustomSize, invalid UTF-8, malformed or truncated
// JSON, duplicate keys, nesting deeper than MaxCustomDepth and trailing
// data. Top-level keys other than "airlock" are ignored; a missing "airlock"
// returns ErrNoMetadata. Inside "airlock" it rejects schema versions other
// than SchemaVersion (ErrUnsupportedSchema), keys that are not exactly a
// schema field (ErrUnknownField), missing required fields, null values and
// values of the wrong type, then converts and validates every field.
func ParseCustom(raw []byte) (*Metadata, error) {
	if len(raw) > MaxCustomSize {
		return nil, fmt.Errorf("%w: custom field is %d bytes, the limit is MaxCustomSize %d", ErrInvalidMetadata, len(raw), MaxCustomSize)
	}
	if err := checkStrictJSON(raw); err != nil {
		return nil, fmt.Errorf("%w: custom field: %w", ErrInvalidMetadata, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%w: custom field: %w", ErrInvalidMetadata, err) // unreachable after checkStrictJSON
	}
	body, ok := top[CustomKey]
	if !ok {
		return nil, ErrNoMetadata
	}
	// The schema comes first: a newer schema may add fields, and the useful
	// error then is "unsupported schema", not "unknown field".
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil || probe == nil {
		return nil, &FieldError{Field: CustomKey, Err: errors.New("want a JSON object")}
	}
	schemaRaw, ok := probe["schema"]
	if !ok {
		return nil, &FieldError{Field: "schema", Err: ErrMissingField}
	}
	var schema int
	if err := strictjson.Unmarshal(schemaRaw, &schema); err != nil {
		return nil, &FieldError{Field: "schema", Err: err}
	}
	optional := metadataOptional
	switch schema {
	case SchemaV1:
	case SchemaVersion:
		optional = metadataOptional2
	default:
		return nil, &FieldError{Field: "schema", Err: fmt.Errorf("%w %d, this build supports %d and %d", ErrUnsupportedSchema, schema, SchemaV1, SchemaVersion)}
	}
	fields, err := objectKeys(body, "", metadataRequired, optional)
	if err != nil {
		return nil, err
	}
	if d, ok := fields["deltas"]; ok {
		var deltas []json.RawMessage
		if err := json.Unmarshal(d, &deltas); err != nil {
			return nil, &FieldError{Field: "deltas", Err: errors.New("want a JSON array")}
		}
		if len(deltas) > MaxDeltas {
			return nil, &FieldError{Field: "deltas", Err: fmt.Errorf("%d deltas, the limit is %d", len(deltas), MaxDeltas)}
		}
		for i, dl := range deltas {
			f, err := objectKeys(dl, fmt.Sprintf("deltas[%d].", i), deltaRequired, nil)
			if err != nil {
				return nil, err
			}
			for _, k := range []string{"tree", "data"} {
				if _, err := objectKeys(f[k], fmt.Sprintf("deltas[%d].%s.", i, k), streamRequired, nil); err != nil {
					return nil, err
				}
			}
		}
	}
	if x, ok := fields["index"]; ok {
		idx, err := objectKeys(x, "index.", indexRequired, indexOptional)
		if err != nil {
			return nil, err
		}
		if f, ok := idx["frames"]; ok {
			if _, err := objectKeys(f, "index.frames.", framesRequired, nil); err != nil {
				return nil, err
			}
		}
	}
	if p, ok := fields["provenance"]; ok {
		if _, err := objectKeys(p, "provenance.", provenanceRequired, nil); err != nil {
			return nil, err
		}
	}
	if _, err := objectKeys(fields["install"], "install.", installRequired, nil); err != nil {
		return nil, err
	}
	if _, err := objectKeys(fields["installed"], "installed.", installedRequired, nil); err != nil {
		return nil, err
	}
	if d, ok := fields["depends"]; ok {
		var deps []json.RawMessage
		if err := json.Unmarshal(d, &deps); err != nil {
			return nil, &FieldError{Field: "depends", Err: errors.New("want a JSON array")}
		}
		if len(deps) > MaxDepends {
			return nil, &FieldError{Field: "depends", Err: fmt.Errorf("%d dependencies, the limit is %d", len(deps), MaxDepends)}
		}
		for i, dep := range deps {
			if _, err := objectKeys(dep, fmt.Sprintf("depends[%d].", i), dependencyRequired, nil); err != nil {
				return nil, err
			}
		}
	}
	if m, ok := fields["models"]; ok {
		var models []json.RawMessage
		if err := json.Unmarshal(m, &models); err == nil && len(models) > MaxModels {
			return nil, &FieldError{Field: "models", Err: fmt.Errorf("%d models, the limit is %d", len(models), MaxModels)}
		}
	}
	var w wireMetadata
	if err := strictjson.Unmarshal(body, &w); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return nil, &FieldError{Field: te.Field, Err: fmt.Errorf("want %v, got %s", te.Type, te.Value)}
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	return w.metadata()
}

// metadata converts the wire form into a validated Metadata.
func (w *wireMetadata) metadata() (*Metadata, error) {
	m := &Metadata{
		Schema:          w.Schema,
		Models:          w.Models,
		SecurityVersion: w.SecurityVersion,
		Channel:         w.Channel,
		Install:         Install{Kind: InstallKind(w.Install.Kind), Compression: Compression(w.Install.Compression)},
		Installed:       Installed{Length: w.Installed.Length},
		Notes:           w.Notes,
		AllowDowngrade:  w.AllowDowngrade,
		Environment:     w.Environment,
	}
	var err error
	if m.Product, err = ParseProduct(w.Product); err != nil {
		return nil, &FieldError{Field: "product", Err: err}
	}
	if w.HWRev != "" {
		if m.HWRev, err = ParseHWRange(w.HWRev); err != nil {
			return nil, &FieldError{Field: "hw_rev", Err: err}
		}
	}
	if m.Version, err = ParseVersion(w.Version); err != nil {
		return nil, &FieldError{Field: "version", Err: err}
	}
	if w.Channel == "" {
		m.Channel = DefaultChannel
	}
	for i, d := range w.Depends {
		if err := validComponent(d.Component); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("depends[%d].component", i), Err: fmt.Errorf("%w: %w", ErrInvalidDependency, err)}
		}
		v, err := ParseVersion(d.MinVersion)
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("depends[%d].min_version", i), Err: err}
		}
		m.Depends = append(m.Depends, Dependency{Component: d.Component, MinVersion: v})
	}
	if !isLowerHex(w.Installed.SHA256, 2*sha256.Size) {
		return nil, &FieldError{Field: "installed.sha256", Err: fmt.Errorf("want %d lowercase hex digits, got %q", 2*sha256.Size, w.Installed.SHA256)}
	}
	if _, err := hex.Decode(m.Installed.SHA256[:], []byte(w.Installed.SHA256)); err != nil {
		panic("internal error: checked hex does not decode") // isLowerHex passed
	}
	if x := w.Index; x != nil {
		if m.Index, err = x.index(); err != nil {
			return nil, err
		}
	}
	for i, d := range w.Deltas {
		field := fmt.Sprintf("deltas[%d]", i)
		var out Delta
		if out.From, err = ParseVersion(d.From); err != nil {
			return nil, &FieldError{Field: field + ".from", Err: err}
		}
		if out.Tree, err = d.Tree.stream(field + ".tree"); err != nil {
			return nil, err
		}
		if out.Data, err = d.Data.stream(field + ".data"); err != nil {
			return nil, err
		}
		m.Deltas = append(m.Deltas, out)
	}
	if p := w.Provenance; p != nil {
		if !isLowerHex(p.SHA256, 2*sha256.Size) {
			return nil, &FieldError{Field: "provenance.sha256", Err: fmt.Errorf("want %d lowercase hex digits, got %q", 2*sha256.Size, p.SHA256)}
		}
		m.Provenance = &Provenance{Length: p.Length}
		hex.Decode(m.Provenance.SHA256[:], []byte(p.SHA256))
	}
	if w.Created != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Created)
		if err != nil || !strings.HasSuffix(w.Created, "Z") {
			return nil, &FieldError{Field: "created", Err: fmt.Errorf("want an RFC 3339 UTC time ending in \"Z\", got %q", w.Created)}
		}
		m.Created = t
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// index converts the wire form of the block index.
func (x *wireIndex) index() (*Index, error) {
	if x.Hash != IndexHash {
		return nil, &FieldError{Field: "index.hash", Err: fmt.Errorf("%q, want %q", x.Hash, IndexHash)}
	}
	if x.BlockSize != IndexBlockSize {
		return nil, &FieldError{Field: "index.block_size", Err: fmt.Errorf("%d, want %d", x.BlockSize, IndexBlockSize)}
	}
	out := &Index{TreeLength: x.TreeLength}
	if len(x.Salt) > 2*MaxSaltSize || len(x.Salt)%2 != 0 || !isLowerHex(x.Salt, len(x.Salt)) {
		return nil, &FieldError{Field: "index.salt", Err: fmt.Errorf("want up to %d lowercase hex digits, an even number", 2*MaxSaltSize)}
	}
	if x.Salt != "" {
		out.Salt, _ = hex.DecodeString(x.Salt)
	}
	if !isLowerHex(x.Root, 2*sha256.Size) {
		return nil, &FieldError{Field: "index.root", Err: fmt.Errorf("want %d lowercase hex digits, got %q", 2*sha256.Size, x.Root)}
	}
	hex.Decode(out.Root[:], []byte(x.Root))
	if f := x.Frames; f != nil {
		if !isLowerHex(f.SHA256, 2*sha256.Size) {
			return nil, &FieldError{Field: "index.frames.sha256", Err: fmt.Errorf("want %d lowercase hex digits, got %q", 2*sha256.Size, f.SHA256)}
		}
		hex.Decode(out.FrameTable[:], []byte(f.SHA256))
		out.FrameSize, out.Frames = f.Size, f.Count
	}
	return out, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// CheckTargetPath checks that a release's TUF target path names the same
// product and exactly the same version (build metadata included) as its
// metadata. TUF only restricts a product role to its own paths
// (Product.PathPattern); without this check a product role could sign
// metadata claiming another product or a version it does not publish.
func CheckTargetPath(m *Metadata, targetPath string) error {
	if m == nil {
		return fmt.Errorf("%w: nil metadata", ErrInvalidMetadata)
	}
	p, v, _, err := ParseTargetPath(targetPath)
	if err != nil {
		return err
	}
	if p != m.Product {
		return fmt.Errorf("%w: path %q is for product %q, metadata says %q", ErrTargetMismatch, targetPath, p, m.Product)
	}
	if v.String() != m.Version.String() {
		return fmt.Errorf("%w: path %q is for version %q, metadata says %q", ErrTargetMismatch, targetPath, v, m.Version)
	}
	return nil
}
