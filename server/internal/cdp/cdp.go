package cdp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits and defaults of the client.
const (
	// LaunchTimeout bounds how long Launch waits for the DevTools URL.
	LaunchTimeout = 30 * time.Second
	// PollInterval is how often WaitFor re-evaluates its condition.
	PollInterval = 100 * time.Millisecond
	// maxStderrLine bounds a line of the browser's stderr.
	maxStderrLine = 64 << 10
)

// Binaries are the Chromium executables Find looks for, in order.
var Binaries = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// ErrNoBrowser: no Chromium executable was found.
var ErrNoBrowser = errors.New("no chromium executable found")

// Find returns the path of the first of Binaries on PATH.
func Find() (string, error) {
	for _, b := range Binaries {
		if p, err := exec.LookPath(b); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: looked for %q", ErrNoBrowser, Binaries)
}

// Options configure Launch.
type Options struct {
	// Binary is the browser executable; empty means Find.
	Binary string
	// UserDataDir is the throwaway profile directory. Required.
	UserDataDir string
	// SPKIHashes are base64 SHA-256 hashes of public keys whose
	// certificates the browser accepts without a trusted chain
	// (--ignore-certificate-errors-spki-list): the test server's.
	SPKIHashes []string
	// Width and Height of the window; zero means 1280x900.
	Width, Height int
	// Stderr, when set, receives the browser's stderr.
	Stderr io.Writer
}

// Browser is a running headless Chromium and its DevTools connection.
type Browser struct {
	cmd  *exec.Cmd
	conn *Conn
	done chan struct{}
}

// Launch starts a headless Chromium with a fresh profile and connects to
// its DevTools endpoint. Close the Browser to kill it.
func Launch(ctx context.Context, o Options) (*Browser, error) {
	if o.UserDataDir == "" {
		return nil, errors.New("cdp: UserDataDir is required")
	}
	if o.Binary == "" {
		var err error
		if o.Binary, err = Find(); err != nil {
			return nil, err
		}
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1280, 900
	}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--user-data-dir=" + o.UserDataDir, "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		fmt.Sprintf("--window-size=%d,%d", o.Width, o.Height),
	}
	if len(o.SPKIHashes) > 0 {
		args = append(args, "--ignore-certificate-errors-spki-list="+strings.Join(o.SPKIHashes, ","))
	}
	args = append(args, "about:blank")
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(os.Environ(), "HOME="+o.UserDataDir)
	// Its own process group, so that Close kills the renderer and helper
	// processes too (they write into UserDataDir until they exit).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", o.Binary, err)
	}
	b := &Browser{cmd: cmd, done: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), maxStderrLine)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if o.Stderr != nil {
				fmt.Fprintln(o.Stderr, line)
			}
			if rest, ok := strings.CutPrefix(line, "DevTools listening on "); ok && !sent {
				urlc <- strings.TrimSpace(rest)
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		cmd.Wait()
		close(b.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, LaunchTimeout)
	defer cancel()
	select {
	case u := <-urlc:
		ws, err := dialWebSocket(u)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.conn = newConn(ws)
		return b, nil
	case <-b.done:
		return nil, fmt.Errorf("%s exited before printing its DevTools URL", o.Binary)
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("no DevTools URL from %s: %w", o.Binary, ctx.Err())
	}
}

// Close closes the connection and kills the browser and every process of
// its group, waiting for the browser to exit.
func (b *Browser) Close() error {
	if b.conn != nil {
		b.conn.close()
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	b.cmd.Process.Kill()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		return errors.New("cdp: browser did not exit after kill")
	}
	return nil
}

// Conn is a DevTools protocol connection: calls are matched to their
// responses by ID; events are ignored (the Page helpers poll instead).
type Conn struct {
	ws      *wsConn
	mu      sync.Mutex
	next    int64
	pending map[int64]chan response
	err     error // set when the reader stops
}

type response struct {
	ID     int64           `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newConn(ws *wsConn) *Conn {
	c := &Conn{ws: ws, pending: map[int64]chan response{}}
	go c.read()
	return c
}

func (c *Conn) read() {
	for {
		msg, err := c.ws.readMessage()
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("devtools connection closed: %w", err)
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var r response
		if err := json.Unmarshal(msg, &r); err != nil || r.ID == 0 {
			continue // an event, or not for us
		}
		c.mu.Lock()
		ch := c.pending[r.ID]
		delete(c.pending, r.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

func (c *Conn) close() { c.ws.close() }

// Call sends method with params (in the flattened session sessionID, or
// to the browser when empty) and decodes the result into result (if not
// nil).
func (c *Conn) Call(ctx context.Context, sessionID, method string, params, result any) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	id := c.next
	ch := make(chan response, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if sessionID != "" {
		msg["sessionId"] = sessionID
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if err := c.ws.writeText(data); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", method, c.err)
		}
		if r.Error != nil {
			return fmt.Errorf("%s: devtools error %d: %s", method, r.Error.Code, r.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(r.Result, result); err != nil {
				return fmt.Errorf("%w: %s result: %w", ErrProtocol, method, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Page is one browser tab, attached as a flattened session.
type Page struct {
	c       *Conn
	session string
}

// NewPage opens a tab on about:blank and attaches to it.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	var t struct {
		TargetID string `json:"targetId"`
	}
	if err := b.conn.Call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &t); err != nil {
		return nil, err
	}
	var a struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.conn.Call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &a); err != nil {
		return nil, err
	}
	p := &Page{c: b.conn, session: a.SessionID}
	for _, m := range []string{"Page.enable", "Runtime.enable"} {
		if err := p.c.Call(ctx, p.session, m, nil, nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Navigate loads url and waits until the document is complete.
func (p *Page) Navigate(ctx context.Context, url string) error {
	var r struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.c.Call(ctx, p.session, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("navigate to %s: %s", url, r.ErrorText)
	}
	return p.WaitFor(ctx, `document.readyState === "complete" && location.href !== "about:blank"`)
}

// Eval evaluates a JavaScript expression in the page and decodes its
// (JSON-serializable) value into out (if not nil). A thrown exception is
// an error.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.c.Call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if err != nil {
		return err
	}
	if d := r.ExceptionDetails; d != nil {
		msg := d.Text
		if d.Exception != nil {
			msg = d.Exception.Description
		}
		return fmt.Errorf("javascript exception: %s", msg)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// WaitFor evaluates expr every PollInterval until it is true (and the
// document is complete), or ctx ends. Evaluation errors during a
// navigation are retried.
func (p *Page) WaitFor(ctx context.Context, expr string) error {
	var last error
	for {
		var ok bool
		err := p.Eval(ctx, `document.readyState === "complete" && !!(`+expr+`)`, &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", expr, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", expr, ctx.Err())
		case <-time.After(PollInterval):
		}
	}
}

// Text returns the page's visible text.
func (p *Page) Text(ctx context.Context) (string, error) {
	var s string
	err := p.Eval(ctx, `document.body ? document.body.innerText : ""`, &s)
	return s, err
}

// URL returns the page's location.
func (p *Page) URL(ctx context.Context) (string, error) {
	var s string
	err := p.Eval(ctx, `location.href`, &s)
	return s, err
}

// Screenshot captures the whole page as PNG.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.c.Call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: screenshot is not base64: %w", ErrProtocol, err)
	}
	return png, nil
}
