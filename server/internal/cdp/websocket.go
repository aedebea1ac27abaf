// Package cdp is a minimal Chrome DevTools Protocol client for end-to-end
// tests: it launches a headless Chromium, speaks CDP over a WebSocket
// (RFC 6455, client side, implemented here so tests need no dependency),
// and offers the few page operations the dashboard test needs (navigate,
// evaluate JavaScript, wait for a condition, capture a screenshot).
//
// # Threat model
//
// The peer is a browser the test itself launched on loopback, so it is
// trusted not to attack the test; still, every frame and message is read
// with named limits (MaxFrameSize, MaxMessageSize) and malformed input
// fails with an error wrapping ErrProtocol rather than a panic. The
// browser loads only the server under test; its flags turn off
// background networking, component updates, sync and QUIC, and it runs
// in a throwaway profile directory.
package cdp

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Limits of the WebSocket layer.
const (
	// MaxFrameSize bounds one frame's payload.
	MaxFrameSize = 64 << 20
	// MaxMessageSize bounds a message assembled from fragments.
	MaxMessageSize = 64 << 20
	// maxControlPayload is RFC 6455 section 5.5.
	maxControlPayload = 125
	// HandshakeTimeout bounds the opening handshake.
	HandshakeTimeout = 10 * time.Second
)

// ErrProtocol is wrapped by every WebSocket and CDP framing error.
var ErrProtocol = errors.New("devtools protocol error")

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// frame is one WebSocket frame as read from the server.
type frame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// readFrame reads one unmasked (server-to-client) frame with a payload of
// at most MaxFrameSize bytes.
func readFrame(r io.Reader) (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, opcode: h[0] & 0x0f}
	if h[0]&0x70 != 0 {
		return frame{}, fmt.Errorf("%w: reserved bits set without an extension", ErrProtocol)
	}
	if h[1]&0x80 != 0 {
		return frame{}, fmt.Errorf("%w: server frame is masked", ErrProtocol)
	}
	switch f.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return frame{}, fmt.Errorf("%w: unknown opcode %#x", ErrProtocol, f.opcode)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return frame{}, fmt.Errorf("%w: truncated length: %w", ErrProtocol, err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
		if n < 126 {
			return frame{}, fmt.Errorf("%w: non-minimal length encoding", ErrProtocol)
		}
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return frame{}, fmt.Errorf("%w: truncated length: %w", ErrProtocol, err)
		}
		n = binary.BigEndian.Uint64(b[:])
		if n <= 0xffff {
			return frame{}, fmt.Errorf("%w: non-minimal length encoding", ErrProtocol)
		}
	}
	if f.opcode >= opClose && (n > maxControlPayload || !f.fin) {
		return frame{}, fmt.Errorf("%w: control frame fragmented or over %d bytes", ErrProtocol, maxControlPayload)
	}
	if n > MaxFrameSize {
		return frame{}, fmt.Errorf("%w: frame of %d bytes exceeds MaxFrameSize", ErrProtocol, n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, fmt.Errorf("%w: truncated payload: %w", ErrProtocol, err)
	}
	return f, nil
}

// appendFrame appends a masked (client-to-server) frame to b.
func appendFrame(b []byte, opcode byte, payload []byte) []byte {
	b = append(b, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// messageReader assembles messages from frames.
type messageReader struct {
	r io.Reader
	// control is called for ping frames (to answer with a pong).
	control func(op byte, payload []byte) error
}

// next returns the next text or binary message; a close frame returns
// io.EOF.
func (m *messageReader) next() ([]byte, error) {
	var msg []byte
	started := false
	for {
		f, err := readFrame(m.r)
		if err != nil {
			return nil, err
		}
		switch f.opcode {
		case opClose:
			return nil, io.EOF
		case opPing, opPong:
			if f.opcode == opPing && m.control != nil {
				if err := m.control(opPong, f.payload); err != nil {
					return nil, err
				}
			}
			continue
		case opContinuation:
			if !started {
				return nil, fmt.Errorf("%w: continuation frame without a message", ErrProtocol)
			}
		default:
			if started {
				return nil, fmt.Errorf("%w: new message inside a fragmented one", ErrProtocol)
			}
			started = true
		}
		if len(msg)+len(f.payload) > MaxMessageSize {
			return nil, fmt.Errorf("%w: message exceeds MaxMessageSize", ErrProtocol)
		}
		msg = append(msg, f.payload...)
		if f.fin {
			return msg, nil
		}
	}
}

// wsConn is a client WebSocket connection.
type wsConn struct {
	conn net.Conn
	msgs messageReader
	wmu  sync.Mutex
}

// dialWebSocket opens a ws:// URL (the browser's DevTools endpoint; no TLS).
func dialWebSocket(rawURL string) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return nil, fmt.Errorf("%w: devtools URL %q is not ws://host/path", ErrProtocol, rawURL)
	}
	conn, err := net.DialTimeout("tcp", u.Host, HandshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to devtools: %w", err)
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	req := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Key": {key}, "Sec-WebSocket-Version": {"13"},
	}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to send the websocket handshake: %w", err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: websocket handshake: %w", ErrProtocol, err)
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		conn.Close()
		return nil, fmt.Errorf("%w: websocket handshake refused: %s", ErrProtocol, resp.Status)
	}
	conn.SetDeadline(time.Time{})
	c := &wsConn{conn: conn}
	c.msgs = messageReader{r: br, control: c.write}
	return c, nil
}

func (c *wsConn) write(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(appendFrame(nil, op, payload))
	return err
}

func (c *wsConn) writeText(payload []byte) error { return c.write(opText, payload) }

func (c *wsConn) readMessage() ([]byte, error) { return c.msgs.next() }

func (c *wsConn) close() error {
	c.write(opClose, []byte{0x03, 0xe8}) // 1000 normal closure
	return c.conn.Close()
}
