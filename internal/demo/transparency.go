package demo

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/witness"
)

// Transparency chapter settings.
const (
	demoLogged   = "1.6.0" // the vendor's release, logged and installed
	demoTargeted = "1.6.6" // the attacker's release, for dev-1 only
	// demoWitnessTimeout bounds a witness's HTTP exchanges.
	demoWitnessTimeout = 10 * time.Second
)

// demoWitnesses are the names of the chapter's witnesses.
var demoWitnesses = []string{"w1.demo", "w2.demo"}

// transparency is the transparency-log chapter: the vendor enables the
// log with two witnesses (C2SP tlog-witness, package witness, on
// 127.0.0.1) and publishes a release every device installs; an attacker
// with the stolen product and online keys signs a release for dev-1 only
// and publishes it without logging it, on a mirror only dev-1 is sent to:
// dev-1 refuses it as not in the witnessed log, its state untouched; the
// attacker, who also holds the log key, then appends it to the log, and
// the vendor's log monitor flags it as a release the vendor never made.
func (d *demo) transparency(ctx context.Context) error {
	d.title("A stolen key signs a targeted release: the witnessed transparency log exposes it")
	logKeyPath := d.path("keys", "log.pem")
	if _, err := d.cli(true, "key", "gen", "--type", "ed25519", "--out", logKeyPath); err != nil {
		return err
	}
	root1, err := os.ReadFile(d.path("repo", "public", "metadata", "1.root.json"))
	if err != nil {
		return err
	}
	origin, err := repo.DefaultLogOrigin(root1)
	if err != nil {
		return err
	}
	logKey, err := keys.LoadPrivate(logKeyPath, nil)
	if err != nil {
		return err
	}
	_, logVKey, err := repo.LogNoteSigner(origin, logKey)
	if err != nil {
		return err
	}
	var flags []string
	var ws []*witness.Witness
	for _, name := range demoWitnesses {
		w, url, err := d.startWitness(ctx, name, logVKey)
		if err != nil {
			return err
		}
		ws = append(ws, w)
		flags = append(flags, "--witness", name+"="+w.VerifierKey()+"@"+url)
	}
	d.say("two independent witnesses (C2SP tlog-witness, package witness) run on 127.0.0.1: each cosigns a")
	d.say("checkpoint of the log %s only if it extends, by a verified consistency proof, the last one it cosigned", origin)
	args := append([]string{"repo", "log", "init", "--dir", d.path("repo"), "--log-key", logKeyPath}, flags...)
	args = append(args, "--witness-threshold", "2", "--old-key", d.path("keys", "root.pem"))
	if _, err := d.cli(true, args...); err != nil {
		return err
	}
	if err := d.release(ctx, demoLogged, false, true); err != nil {
		return err
	}
	for _, w := range ws {
		if w.Held(origin) == 0 {
			return fmt.Errorf("witness %s cosigned no checkpoint", w.Name())
		}
	}
	d.say("root version 2 requires the log: the publish appended every release to it, and both witnesses")
	d.say("cosigned its checkpoint (size %d) before any metadata was written", ws[0].Held(origin))
	if err := d.pollExpect(ctx, agent.ActionCommitted, demoLogged); err != nil {
		return err
	}
	d.say("each device followed the root to version 2, checked the checkpoint (log key, 2 of 2 witness")
	d.say("cosignatures), %s's inclusion proof and consistency with its stored view, and keeps that view", demoLogged)

	// The attack: a copy of the repository, the stolen keys, no log entry.
	dev := d.devices[0]
	heldCheckpoint := filepath.Join(dev.dir, device.LayoutStateDir, "trust", trust.LogCheckpointFile)
	held, err := os.ReadFile(heldCheckpoint)
	if err != nil {
		return fmt.Errorf("%s holds no log checkpoint: %v", dev.name, err)
	}
	evil := d.path("attacker", "repo")
	if err := os.MkdirAll(d.path("attacker"), 0o755); err != nil {
		return err
	}
	if err := os.CopyFS(evil, os.DirFS(d.path("repo"))); err != nil {
		return err
	}
	d.say("an attacker steals the product key and the online snapshot and timestamp keys, and copies the")
	d.say("public repository into attacker/repo; the release is for %s only:", dev.name)
	img, err := d.image(demoTargeted, false)
	if err != nil {
		return err
	}
	if _, err := d.cli(true, "release", "add", "--dir", evil, "--product", demoProduct, "--image", img,
		"--version", demoTargeted, "--security-version", demoSecurity[demoTargeted], "--model", "x1", "--hw-rev", ">=2 <4",
		"--compress", "zstd", "--key", d.path("keys", "product.pem")); err != nil {
		return err
	}
	snap, err := keys.LoadPrivate(d.path("keys", "snapshot.pem"), nil)
	if err != nil {
		return err
	}
	ts, err := keys.LoadPrivate(d.path("keys", "timestamp.pem"), nil)
	if err != nil {
		return err
	}
	er, err := repo.OpenWith(evil, repo.Options{Actor: "attacker", ExternalLog: true})
	if err != nil {
		return err
	}
	if _, err := er.Publish(snap, ts); err != nil {
		return fmt.Errorf("the attacker's publish: %w", err)
	}
	d.say(`repo.OpenWith("attacker/repo", repo.Options{ExternalLog: true}).Publish(snapshotKey, timestampKey)`)
	d.say("(the Go library: validly signed metadata, and no log entry: a log the attacker cannot sign for")
	d.say("without the witnesses seeing it)")
	mirror := httptest.NewUnstartedServer(http.FileServer(http.Dir(er.PublicDir())))
	mirror.StartTLS()
	defer mirror.Close()
	caFile := d.path("attacker", "mirror-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mirror.Certificate().Raw}), 0o644); err != nil {
		return err
	}
	targeted, err := agent.New(&agent.Config{DeviceConfig: device.Layout{Dir: dev.dir}.ConfigPath(), ServerCA: caFile,
		MetadataURL: mirror.URL + "/metadata/", TargetsURL: mirror.URL + "/targets/", Progress: agent.ProgressNone,
		StallTimeout: 10 * time.Second}, agent.Options{})
	if err != nil {
		return err
	}
	d.say("%s alone is sent to the attacker's mirror %s (a hijacked name, a certificate it trusts):", dev.name, mirror.URL)
	r, err := targeted.RunOnce(ctx)
	if r == nil {
		r = &agent.Result{Action: agent.ActionFailed}
	}
	if err != nil && r.Message == "" {
		r.Message = err.Error()
	}
	d.say("%s: %s: %s", dev.name, r.Action, short(r.Message))
	if r.Action != agent.ActionFailed || !strings.Contains(r.Message, "is not in the transparency log") {
		return fmt.Errorf("%s: the unlogged release was not refused as not logged: %s %s", dev.name, r.Action, r.Message)
	}
	after, err := os.ReadFile(heldCheckpoint)
	if err != nil || !bytes.Equal(after, held) {
		return fmt.Errorf("%s: the refused install changed the stored log checkpoint: %v", dev.name, err)
	}
	if err := d.expectVersions(demoLogged, device.StatusCommitted); err != nil {
		return err
	}
	d.say("refused with every signature valid: nothing was written, %s still runs %s", dev.name, demoLogged)

	// The vendor's monitor, then the attacker logging the release.
	expect := d.path("expected-releases.txt")
	var lines []string
	for v := range demoSecurity {
		if v != demoTargeted {
			lines = append(lines, demoProduct+"@"+v)
		}
	}
	slices.Sort(lines)
	if err := os.WriteFile(expect, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	monitor := []string{"log", "monitor", "--repo", d.url + "/repo/", "--ca", d.path("server-ca.pem"), "--state", d.path("monitor"),
		"--root", d.path("repo", "public", "metadata", "1.root.json"), "--expect", expect}
	out, err := d.cli(true, monitor...)
	if err != nil {
		return err
	}
	d.say("the vendor's security team follows the log: %d releases, each one they made (exit 0)", strings.Count(out, "\n"))
	d.say("to reach any device the release must be in the log; the attacker also holds the log key and")
	d.say("appends it, on the vendor's repository host, with an ordinary publish:")
	if _, err := d.cli(true, "release", "add", "--dir", d.path("repo"), "--product", demoProduct, "--image", img,
		"--version", demoTargeted, "--security-version", demoSecurity[demoTargeted], "--model", "x1", "--hw-rev", ">=2 <4",
		"--compress", "zstd", "--key", d.path("keys", "product.pem")); err != nil {
		return err
	}
	if _, err := d.cli(true, "repo", "publish", "--dir", d.path("repo"), "--snapshot-key", d.path("keys", "snapshot.pem"),
		"--timestamp-key", d.path("keys", "timestamp.pem")); err != nil {
		return err
	}
	_, err = d.cli(true, monitor...)
	if err == nil {
		return errors.New("log monitor did not flag the attacker's release")
	}
	if !strings.Contains(err.Error(), "not expected") || !strings.Contains(err.Error(), demoProduct+"@"+demoTargeted) {
		return fmt.Errorf("log monitor failed for another reason: %v", err)
	}
	for _, l := range strings.Split(strings.TrimPrefix(err.Error(), "airlock log monitor: "), "\n") {
		if strings.Contains(l, "not expected") {
			d.say("%s", strings.TrimPrefix(strings.TrimPrefix(l, "airlock: error: "), "airlock: "))
		}
	}
	d.say("exit 1: the witnesses cosigned the log that holds it, so it cannot be shown to one device and")
	d.say("hidden from the monitor; the vendor revokes the stolen keys and rotates them through the root")
	return nil
}

// startWitness makes a witness key in witnesses/NAME, serves the witness
// on 127.0.0.1 until the demo's context ends, and returns it and its URL.
func (d *demo) startWitness(ctx context.Context, name, logVKey string) (*witness.Witness, string, error) {
	dir := d.path("witnesses", name)
	if _, err := witness.GenerateKey(dir, name); err != nil {
		return nil, "", err
	}
	w, err := witness.Open(dir, []string{logVKey})
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: demoWitnessTimeout, ReadTimeout: demoWitnessTimeout, WriteTimeout: demoWitnessTimeout}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	url := "http://" + ln.Addr().String() + "/"
	d.say("$ airlock witness serve --dir witnesses/%s --name %s --listen %s --log %s", name, name, ln.Addr(), logVKey)
	return w, url, nil
}
