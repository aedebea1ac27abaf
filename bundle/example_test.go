package bundle_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/airlockfw/airlock/bundle"
)

func Example() {
	// Vendor side: the metadata files come from the TUF repository, the
	// payload is streamed from the published target file.
	payload := "firmware image bytes"
	m := &bundle.Metadata{
		RootChain: [][]byte{
			[]byte(`{"signed":{"_type":"root","version":2},"signatures":[]}`),
			[]byte(`{"signed":{"_type":"root","version":3},"signatures":[]}`),
		},
		Timestamp:     []byte(`{"signed":{"_type":"timestamp","version":9},"signatures":[]}`),
		Snapshot:      []byte(`{"signed":{"_type":"snapshot","version":9},"signatures":[]}`),
		Targets:       []byte(`{"signed":{"_type":"targets","version":4},"signatures":[]}`),
		Delegated:     []bundle.Role{{Name: "acme.router-x1", Data: []byte(`{"signed":{"_type":"targets","version":12},"signatures":[]}`)}},
		TargetPath:    "acme/router-x1/1.1.0/firmware.img",
		PayloadLength: int64(len(payload)),
	}
	var usb bytes.Buffer
	if err := bundle.Write(&usb, m, strings.NewReader(payload)); err != nil {
		log.Fatal(err)
	}

	// Device side: read and check the metadata section, hand it to the TUF
	// client, then stream the payload into the inactive slot while hashing.
	r, err := bundle.NewReader(&usb, bundle.Limits{MaxPayloadSize: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	md := r.Metadata()
	fmt.Println(len(md.RootChain), "roots,", len(md.Delegated), "delegation,", md.TargetPath)
	// ... verify md with the TUF client; look up md.TargetPath; check its
	// length equals md.PayloadLength ...
	h := sha256.New() // in a device: the TUF target hash, teed into the slot
	n, err := io.Copy(h, r.Payload())
	if err != nil {
		log.Fatal(err) // truncated, damaged, or trailing junk: discard the slot
	}
	fmt.Println(n, "payload bytes")
	// Output:
	// 2 roots, 1 delegation, acme/router-x1/1.1.0/firmware.img
	// 20 payload bytes
}
