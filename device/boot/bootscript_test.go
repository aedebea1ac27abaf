package boot_test

// The shipped U-Boot files (docs/examples/uboot: boot.cmd, env.txt,
// fw_env.config) run against the real uboot-env backend: a small interpreter
// for the subset of U-Boot's hush the files use, and U-Boot's bootcount
// (CONFIG_BOOTCOUNT_LIMIT + CONFIG_BOOTCOUNT_ENV) modelled on
// include/bootcount.h bootcount_inc, drivers/bootcount/bootcount_env.c and
// common/autoboot.c (bootlimit && bootcount > bootlimit runs altbootcmd).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/verify"
)

const examples = "../../docs/examples"

// --- a hush subset: words, quotes, ${var}, ; && || newlines, #comments,
// if/then/elif/else/fi, for/in/do/done.

type seg struct {
	text   string
	quoted bool // "..." (expanded, not dropped when empty)
	single bool // '...' (not expanded)
}

type token struct {
	op   string // ";", "&&", "||" or "" for a word
	word []seg
}

func (t token) keyword() string {
	if t.op == "" && len(t.word) == 1 && !t.word[0].quoted && !t.word[0].single {
		return t.word[0].text
	}
	return ""
}

func tokenize(src string) ([]token, error) {
	var toks []token
	var cur []seg
	var lit strings.Builder
	inWord := false
	flushLit := func() {
		if lit.Len() > 0 {
			cur = append(cur, seg{text: lit.String()})
			lit.Reset()
		}
	}
	endWord := func() {
		flushLit()
		if inWord {
			toks = append(toks, token{word: cur})
		}
		cur, inWord = nil, false
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '#' && !inWord:
			for i < len(src) && src[i] != '\n' {
				i++
			}
			i--
		case c == ' ' || c == '\t':
			endWord()
		case c == '\n' || c == ';':
			endWord()
			toks = append(toks, token{op: ";"})
		case c == '&' || c == '|':
			if i+1 >= len(src) || src[i+1] != c {
				return nil, fmt.Errorf("unsupported %q at %d", c, i)
			}
			endWord()
			toks = append(toks, token{op: string([]byte{c, c})})
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(src[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote at %d", i)
			}
			flushLit()
			cur = append(cur, seg{text: src[i+1 : i+1+j], quoted: c == '"', single: c == '\''})
			inWord = true
			i += j + 1
		default:
			lit.WriteByte(c)
			inWord = true
		}
	}
	endWord()
	return toks, nil
}

type node interface{}

type simple struct{ words [][]seg }

type andOr struct {
	cmds []node
	ops  []string
}

type ifClause struct {
	conds, bodies [][]node // elif branches follow the if
	els           []node
}

type forClause struct {
	name  string
	items [][]seg
	body  []node
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{op: "EOF"}
}

func (p *parser) expect(kw string) error {
	p.skipSep()
	if p.peek().keyword() != kw {
		return fmt.Errorf("want %q at token %d", kw, p.pos)
	}
	p.pos++
	return nil
}

func (p *parser) skipSep() {
	for p.peek().op == ";" {
		p.pos++
	}
}

func (p *parser) list(stop ...string) ([]node, error) {
	var out []node
	for {
		p.skipSep()
		t := p.peek()
		if t.op == "EOF" {
			return out, nil
		}
		for _, s := range stop {
			if t.keyword() == s {
				return out, nil
			}
		}
		n, err := p.andOr()
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
}

func (p *parser) andOr() (node, error) {
	a := &andOr{}
	for {
		c, err := p.command()
		if err != nil {
			return nil, err
		}
		a.cmds = append(a.cmds, c)
		if op := p.peek().op; op == "&&" || op == "||" {
			a.ops = append(a.ops, op)
			p.pos++
			continue
		}
		return a, nil
	}
}

func (p *parser) command() (node, error) {
	switch p.peek().keyword() {
	case "if":
		p.pos++
		ic := &ifClause{}
		for {
			cond, err := p.list("then")
			if err != nil {
				return nil, err
			}
			if err := p.expect("then"); err != nil {
				return nil, err
			}
			body, err := p.list("elif", "else", "fi")
			if err != nil {
				return nil, err
			}
			ic.conds, ic.bodies = append(ic.conds, cond), append(ic.bodies, body)
			switch p.peek().keyword() {
			case "elif":
				p.pos++
				continue
			case "else":
				p.pos++
				if ic.els, err = p.list("fi"); err != nil {
					return nil, err
				}
			}
			return ic, p.expect("fi")
		}
	case "for":
		p.pos++
		fc := &forClause{name: p.peek().keyword()}
		p.pos++
		if err := p.expect("in"); err != nil {
			return nil, err
		}
		for p.peek().op == "" {
			fc.items = append(fc.items, p.peek().word)
			p.pos++
		}
		if err := p.expect("do"); err != nil {
			return nil, err
		}
		body, err := p.list("done")
		if err != nil {
			return nil, err
		}
		fc.body = body
		return fc, p.expect("done")
	}
	s := &simple{}
	for p.peek().op == "" {
		s.words = append(s.words, p.peek().word)
		p.pos++
	}
	if len(s.words) == 0 {
		return nil, fmt.Errorf("empty command at token %d", p.pos)
	}
	return s, nil
}

func parseScript(src string) ([]node, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.list()
	if err == nil && p.pos != len(toks) {
		err = fmt.Errorf("unexpected %q at token %d", p.peek().keyword(), p.pos)
	}
	return n, err
}

// --- the simulated board

type booted struct{ bootargs string }

func (b booted) Error() string { return "booted: " + b.bootargs }

var errReset = errors.New("reset")

// uboot is one power cycle of a board with U-Boot, the environment in the
// uboot-env files, partition 1 holding boot.scr and partitions 2..4 a FIT.
type uboot struct {
	t       *testing.T
	fsys    durable.FS
	cfg     boot.Config
	env     [][2]string
	locals  map[string]string
	mem     map[string]string // load address -> what was loaded
	script  string            // /boot.scr on partition 1
	noFIT   map[string]bool   // partitions whose FIT fails to load or verify
	console []string

	grubPath string // grubenv file (GRUB boards)
	grubCfg  string // grub.cfg up to its menu entries
}

func (u *uboot) get(name string) (string, bool) {
	if v, ok := u.locals[name]; ok {
		return v, true
	}
	for _, v := range u.env {
		if v[0] == name {
			return v[1], true
		}
	}
	return "", false
}

func (u *uboot) setenv(name, value string, del bool) {
	for i, v := range u.env {
		if v[0] == name {
			if del {
				u.env = append(u.env[:i], u.env[i+1:]...)
			} else {
				u.env[i][1] = value
			}
			return
		}
	}
	if !del {
		u.env = append(u.env, [2]string{name, value})
	}
}

func (u *uboot) expand(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		var name string
		if s[i+1] == '{' {
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				u.t.Fatalf("unterminated ${ in %q", s)
			}
			name, i = s[i+2:i+j], i+j
		} else {
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name, i = s[i+1:j], j-1
		}
		v, _ := u.get(name)
		b.WriteString(v)
	}
	return b.String()
}

// words expands words; an unquoted word that expands to nothing is dropped.
func (u *uboot) words(ws [][]seg) []string {
	var out []string
	for _, w := range ws {
		var b strings.Builder
		quoted := false
		for _, s := range w {
			quoted = quoted || s.quoted || s.single
			if s.single {
				b.WriteString(s.text)
			} else {
				b.WriteString(u.expand(s.text))
			}
		}
		if b.Len() > 0 || quoted {
			out = append(out, b.String())
		}
	}
	return out
}

func (u *uboot) runScript(src string) (int, error) {
	nodes, err := parseScript(src)
	if err != nil {
		u.t.Fatalf("hush: %v in %q", err, src)
	}
	return u.exec(nodes)
}

func (u *uboot) exec(nodes []node) (int, error) {
	st := 0
	for _, n := range nodes {
		var err error
		if st, err = u.execNode(n); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (u *uboot) execNode(n node) (int, error) {
	switch n := n.(type) {
	case *andOr:
		st, err := u.execNode(n.cmds[0])
		for i, op := range n.ops {
			if err != nil {
				return st, err
			}
			if (op == "&&") == (st == 0) {
				st, err = u.execNode(n.cmds[i+1])
			}
		}
		return st, err
	case *ifClause:
		for i, cond := range n.conds {
			st, err := u.exec(cond)
			if err != nil {
				return st, err
			}
			if st == 0 {
				return u.exec(n.bodies[i])
			}
		}
		return u.exec(n.els)
	case *forClause:
		st := 0
		for _, item := range u.words(n.items) {
			u.locals[n.name] = item
			var err error
			if st, err = u.exec(n.body); err != nil {
				return st, err
			}
		}
		return st, nil
	case *simple:
		return u.command(u.words(n.words))
	}
	panic("internal error: unknown node")
}

func (u *uboot) command(args []string) (int, error) {
	status := func(ok bool) (int, error) {
		if ok {
			return 0, nil
		}
		return 1, nil
	}
	switch args[0] {
	case "setenv":
		u.setenv(args[1], strings.Join(args[2:], " "), len(args) == 2)
		return 0, nil
	case "echo":
		u.console = append(u.console, strings.Join(args[1:], " "))
		return 0, nil
	case "test":
		return status(testExpr(u.t, args[1:]))
	case "run":
		for _, name := range args[1:] {
			v, ok := u.get(name)
			if !ok {
				return 1, nil
			}
			if st, err := u.runScript(v); err != nil || st != 0 {
				return st, err
			}
		}
		return 0, nil
	case "load": // load mmc 0:PART ADDR FILE
		part := strings.TrimPrefix(args[2], "0:")
		switch {
		case part == "1" && args[4] == "/boot.scr":
			u.mem[args[3]] = "script"
		case args[4] == "/boot/fitImage" && !u.noFIT[part]:
			u.mem[args[3]] = "fit" + part
		default:
			return 1, nil
		}
		return 0, nil
	case "source":
		if u.mem[args[1]] != "script" {
			return 1, nil
		}
		return u.runScript(u.script)
	case "bootm":
		if !strings.HasPrefix(u.mem[args[1]], "fit") {
			return 1, nil
		}
		args, _ := u.get("bootargs")
		return 0, booted{args}
	case "reset":
		return 0, errReset
	// GRUB (grub.cfg): the same shell grammar, other commands.
	case "set":
		name, value, _ := strings.Cut(args[1], "=")
		u.setenv(name, value, false)
		return 0, nil
	case "[":
		if args[len(args)-1] != "]" {
			u.t.Fatalf("grub: [ without ]: %q", args)
		}
		return status(testExpr(u.t, args[1:len(args)-1]))
	case "load_env":
		env, err := boot.ReadGrubEnv(u.fsys, u.grubPath)
		if err != nil {
			u.t.Fatal(err)
		}
		for _, v := range env {
			u.setenv(v[0], v[1], false)
		}
		return 0, nil
	case "save_env": // save_env --file F NAME...
		var vars [][2]string
		for _, name := range args[3:] {
			v, _ := u.get(name)
			vars = append(vars, [2]string{name, v})
		}
		if err := boot.SaveGrubEnv(u.fsys, u.grubPath, vars); err != nil {
			u.t.Fatal(err)
		}
		return 0, nil
	}
	u.t.Fatalf("hush: unsupported command %q", args)
	return 1, nil
}

func testExpr(t *testing.T, a []string) bool {
	switch len(a) {
	case 2:
		switch a[0] {
		case "-n":
			return a[1] != ""
		case "-z":
			return a[1] == ""
		}
	case 3:
		switch a[1] {
		case "=":
			return a[0] == a[2]
		case "!=":
			return a[0] != a[2]
		case "-ge", "-gt", "-le", "-lt", "-eq", "-ne":
			x, err1 := strconv.Atoi(a[0])
			y, err2 := strconv.Atoi(a[2])
			if err1 != nil || err2 != nil {
				t.Fatalf("test: not numbers: %q", a)
			}
			return map[string]bool{"-ge": x >= y, "-gt": x > y, "-le": x <= y, "-lt": x < y, "-eq": x == y, "-ne": x != y}[a[1]]
		}
	}
	t.Fatalf("hush: unsupported test %q", a)
	return false
}

// powerOn runs one boot: U-Boot's bootcount, then bootcmd or altbootcmd,
// and returns the slot the kernel was started with ("" if none).
func (u *uboot) powerOn() boot.Slot {
	u.t.Helper()
	env, err := boot.ReadUBootEnv(u.fsys, u.cfg)
	if err != nil {
		u.t.Fatal(err)
	}
	u.env, u.locals, u.mem, u.console = env, map[string]string{}, map[string]string{}, nil
	ulong := func(name string) int {
		v, _ := u.get(name)
		n, _ := strconv.Atoi(v)
		return n
	}
	// bootcount_inc: bootcount_load (0 unless upgrade_available), +1,
	// bootcount_store (saved only while upgrade_available), env_set_ulong.
	upgrade := ulong("upgrade_available") != 0
	count := 1
	if upgrade {
		count = ulong("bootcount") + 1
	}
	u.setenv("bootcount", strconv.Itoa(count), false)
	if upgrade {
		if err := boot.WriteUBootEnv(u.fsys, u.cfg, u.env); err != nil {
			u.t.Fatal(err)
		}
	}
	cmd := "bootcmd"
	if limit := ulong("bootlimit"); limit != 0 && count > limit {
		cmd = "altbootcmd"
	}
	_, err = u.command([]string{"run", cmd})
	var b booted
	if !errors.As(err, &b) {
		return ""
	}
	for _, f := range strings.Fields(b.bootargs) {
		if s, ok := strings.CutPrefix(f, "airlock.slot="); ok {
			return boot.Slot(s)
		}
	}
	u.t.Fatalf("bootargs %q name no airlock.slot", b.bootargs)
	return ""
}

// powerOnGrub runs grub.cfg up to its menu entries and returns the slot of
// the default entry.
func (u *uboot) powerOnGrub() boot.Slot {
	u.t.Helper()
	u.env, u.locals = nil, map[string]string{}
	if _, err := u.runScript(u.grubCfg); err != nil {
		u.t.Fatal(err)
	}
	def, _ := u.get("default")
	slot, ok := strings.CutPrefix(def, "airlock-")
	if !ok {
		u.t.Fatalf("grub.cfg default = %q", def)
	}
	return boot.Slot(slot)
}

// fwEnvConfig reads the shipped fw_env.config as a boot.Config for dir.
func fwEnvConfig(t *testing.T, dir string) boot.Config {
	f, err := os.Open(filepath.Join(examples, "uboot", "fw_env.config"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := boot.Config{Backend: boot.BackendUBootEnv}
	var n int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		if len(fs) != 3 {
			t.Fatalf("fw_env.config line %q: want device offset size", sc.Text())
		}
		off, err1 := strconv.ParseInt(fs[1], 0, 64)
		size, err2 := strconv.ParseInt(fs[2], 0, 64)
		if err1 != nil || err2 != nil || (cfg.EnvSize != 0 && size != cfg.EnvSize) {
			t.Fatalf("fw_env.config line %q: bad offset or size", sc.Text())
		}
		cfg.EnvSize = size
		switch n++; n {
		case 1:
			cfg.Path, cfg.Offset = filepath.Join(dir, fs[0]), off
		case 2:
			cfg.RedundPath, cfg.RedundOffset = filepath.Join(dir, fs[0]), off
		default:
			t.Fatal("fw_env.config: more than two copies")
		}
	}
	if n != 2 {
		t.Fatalf("fw_env.config: %d copies, want a redundant pair", n)
	}
	return cfg
}

// newBoard makes a device directory with the uboot-env backend (what
// `airlock device init --boot uboot-env --boot-limit N` makes), release
// 1.0.0 committed in A and 1.1.0 installed into B on trial, and adds
// env.txt to the environment as `fw_setenv -s env.txt` would.
func newBoard(t *testing.T, limit int) (*device.Device, *uboot) {
	t.Helper()
	return newBoardFor(t, boot.BackendUBootEnv, limit)
}

// newBoardFor is newBoard for backend uboot-env or grubenv (then grub.cfg
// instead of the U-Boot files).
func newBoardFor(t *testing.T, backend string, limit int) (*device.Device, *uboot) {
	t.Helper()
	v := repotest.New(t, repotest.Options{})
	v.Release("1.0.0", 1, repotest.Image(1, 64<<10), nil)
	v.Release("1.1.0", 2, repotest.Image(2, 64<<10), nil)
	dir := filepath.Join(t.TempDir(), "dev")
	layout := device.Layout{Dir: dir}
	cfg, err := layout.Config(backend, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model, cfg.HWRev, cfg.Product = v.Model, 1, v.Product
	cfg.Boot.BootLimit = limit
	cfg.Health.Command, cfg.Health.Timeout = []string{"true"}, 10*time.Second
	src, err := verify.OpenBundle(bytes.NewReader(v.Bundle("1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := layout.Create(context.Background(), durable.OS, cfg,
		device.ProvisionOptions{FactoryRoot: v.FactoryRoot, Initial: src, InitialTarget: src.TargetPath()}, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if backend == boot.BackendGrubEnv {
		grubCfg, err := os.ReadFile(filepath.Join(examples, "grub", "grub.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		head, _, ok := strings.Cut(string(grubCfg), "\nmenuentry ")
		if !ok {
			t.Fatal("grub.cfg has no menuentry")
		}
		u := &uboot{t: t, fsys: durable.OS, grubPath: d.Config().Path(cfg.Boot.Path), grubCfg: head}
		if got := u.powerOnGrub(); got != boot.SlotA {
			t.Fatalf("before the install GRUB booted %q, want A", got)
		}
		mustBoot(t, d, boot.SlotA, false)
		if _, err := d.InstallBundle(context.Background(), bytes.NewReader(v.Bundle("1.1.0")), device.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		return d, u
	}
	bcfg := fwEnvConfig(t, d.Config().Dir)
	want := boot.Config{Backend: boot.BackendUBootEnv,
		Path: d.Config().Path(cfg.Boot.Path), RedundPath: d.Config().Path(cfg.Boot.RedundPath), EnvSize: boot.DefaultEnvSize}
	if bcfg != want {
		t.Fatalf("fw_env.config = %+v, device.toml = %+v", bcfg, want)
	}
	script, err := os.ReadFile(filepath.Join(examples, "uboot", "boot.cmd"))
	if err != nil {
		t.Fatal(err)
	}
	envTxt, err := os.ReadFile(filepath.Join(examples, "uboot", "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := boot.ReadUBootEnv(durable.OS, bcfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(envTxt)), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env.txt line %q", line)
		}
		env = append(env, [2]string{name, value})
	}
	env = append(env, [2]string{"scriptaddr", "0x80000000"}, [2]string{"loadaddr", "0x82000000"})
	if err := boot.WriteUBootEnv(durable.OS, bcfg, env); err != nil {
		t.Fatal(err)
	}
	u := &uboot{t: t, fsys: durable.OS, cfg: bcfg, script: string(script), noFIT: map[string]bool{}}
	if got := u.powerOn(); got != boot.SlotA {
		t.Fatalf("before the install U-Boot booted %q, want A (console %q)", got, u.console)
	}
	mustBoot(t, d, boot.SlotA, false)
	if _, err := d.InstallBundle(context.Background(), bytes.NewReader(v.Bundle("1.1.0")), device.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	return d, u
}

func mustBoot(t *testing.T, d *device.Device, slot boot.Slot, trial bool) *device.BootResult {
	t.Helper()
	r, err := d.Boot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Slot != slot || r.Trial != trial {
		t.Fatalf("device boot = %+v, want slot %s trial %v", r, slot, trial)
	}
	return r
}

// TestUBootScriptTrialBootsWithDefaultLimit is the boot_limit trap of issue
// 12: U-Boot counts the first trial attempt (bootcount 1 <= bootlimit 1) and
// boots the new slot; the boot stage must see that as the trial, not as an
// exhausted one to roll back.
func TestUBootScriptTrialBootsWithDefaultLimit(t *testing.T) {
	d, u := newBoard(t, 0) // 0: the default, boot.DefaultBootLimit
	if got := u.powerOn(); got != boot.SlotB {
		t.Fatalf("first trial power-on booted %q, want B (console %q)", got, u.console)
	}
	if r := mustBoot(t, d, boot.SlotB, true); len(r.Fallbacks) != 0 {
		t.Fatalf("device boot fell back: %q", r.Fallbacks)
	}
	h, err := d.Health(context.Background())
	if err != nil || !h.Committed {
		t.Fatalf("health = %+v, %v; want commit", h, err)
	}
	for range 3 {
		if got := u.powerOn(); got != boot.SlotB {
			t.Fatalf("after the commit U-Boot booted %q, want B", got)
		}
		mustBoot(t, d, boot.SlotB, false)
	}
}

// TestUBootScriptFallsBackAfterLimit: a trial that is never committed (the
// system hangs before health) gets exactly boot_limit attempts, then
// altbootcmd boots the good slot and the boot stage rolls the trial back.
func TestUBootScriptFallsBackAfterLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			d, u := newBoard(t, limit)
			for i := range limit {
				if got := u.powerOn(); got != boot.SlotB {
					t.Fatalf("attempt %d booted %q, want B (console %q)", i+1, got, u.console)
				}
				mustBoot(t, d, boot.SlotB, true) // then hang: no health
			}
			if got := u.powerOn(); got != boot.SlotA {
				t.Fatalf("after %d attempts U-Boot booted %q, want A (console %q)", limit, got, u.console)
			}
			if r := mustBoot(t, d, boot.SlotA, false); len(r.Fallbacks) == 0 {
				t.Fatalf("device boot = %+v, want the trial rolled back", r)
			}
			st := d.Status()
			if st.Boot.Trial != "" || st.Boot.Good != boot.SlotA || len(st.Boot.Bad) != 1 || st.Boot.Bad[0] != boot.SlotB {
				t.Fatalf("boot state = %+v, want good A, B bad, no trial", st.Boot)
			}
			for range 2 {
				if got := u.powerOn(); got != boot.SlotA {
					t.Fatalf("after the rollback U-Boot booted %q, want A", got)
				}
				mustBoot(t, d, boot.SlotA, false)
			}
		})
	}
}

// TestUBootScriptLoadFailureFallsThrough: a trial slot whose FIT does not
// load or verify is skipped by the script's loop in the same power cycle.
func TestUBootScriptLoadFailureFallsThrough(t *testing.T) {
	_, u := newBoard(t, 1)
	u.noFIT["3"] = true // slot B's partition
	if got := u.powerOn(); got != boot.SlotA {
		t.Fatalf("booted %q, want A (console %q)", got, u.console)
	}
	if len(u.console) != 1 || u.console[0] != "airlock: slot B failed to load or verify" {
		t.Fatalf("console = %q", u.console)
	}
	u.noFIT["2"], u.noFIT["4"] = true, true
	if got := u.powerOn(); got != "" || u.console[len(u.console)-1] != "airlock: nothing bootable" {
		t.Fatalf("with nothing loadable: booted %q, console %q", got, u.console)
	}
}

// TestGrubCfgCounting runs the shipped grub.cfg's counting against the
// grubenv backend: with the default limit the first trial boot boots the
// new slot and commits; an uncommitted trial gets boot_limit attempts, then
// the good slot boots and the boot stage rolls the trial back. Limit 6 is
// over what the lookup counts (device init refuses it, device.toml does
// not): the trial then ends after 5 attempts, seen as exhausted by both.
func TestGrubCfgCounting(t *testing.T) {
	d, g := newBoardFor(t, boot.BackendGrubEnv, 0)
	if got := g.powerOnGrub(); got != boot.SlotB {
		t.Fatalf("first trial boot: GRUB booted %q, want B", got)
	}
	mustBoot(t, d, boot.SlotB, true)
	if h, err := d.Health(context.Background()); err != nil || !h.Committed {
		t.Fatalf("health = %+v, %v; want commit", h, err)
	}
	for range 2 {
		if got := g.powerOnGrub(); got != boot.SlotB {
			t.Fatalf("after the commit GRUB booted %q, want B", got)
		}
		mustBoot(t, d, boot.SlotB, false)
	}

	for _, tc := range []struct{ limit, attempts int }{{1, 1}, {2, 2}, {5, 5}, {6, 5}} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			d, g := newBoardFor(t, boot.BackendGrubEnv, tc.limit)
			for i := range tc.attempts {
				if got := g.powerOnGrub(); got != boot.SlotB {
					t.Fatalf("attempt %d booted %q, want B", i+1, got)
				}
				mustBoot(t, d, boot.SlotB, true)
			}
			if got := g.powerOnGrub(); got != boot.SlotA {
				t.Fatalf("after %d attempts GRUB booted %q, want A", tc.attempts, got)
			}
			if r := mustBoot(t, d, boot.SlotA, false); len(r.Fallbacks) == 0 {
				t.Fatalf("device boot = %+v, want the trial rolled back", r)
			}
			if got := g.powerOnGrub(); got != boot.SlotA {
				t.Fatalf("after the rollback GRUB booted %q, want A", got)
			}
		})
	}
}

// TestGrubCfgVariables: grub.cfg reads only variables the grubenv backend
// writes, and has a menu entry per slot that tells the kernel its slot.
func TestGrubCfgVariables(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(examples, "grub", "grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	written := map[string]bool{boot.VarBootSlot: true, boot.VarUpgradeAvailable: true, boot.VarBootCount: true,
		boot.VarBootLimit: true, boot.VarGood: true}
	set := map[string]bool{"slot": true, "root": true}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(cfg, -1) {
		if !written[m[1]] && !set[m[1]] {
			t.Errorf("grub.cfg reads ${%s}, which Airlock does not write", m[1])
		}
	}
	for _, s := range []string{"A", "B", "R"} {
		if !strings.Contains(cfg, "--id airlock-"+s+" ") || !strings.Contains(cfg, "airlock.slot="+s+"\n") {
			t.Errorf("grub.cfg lacks the menu entry airlock-%s with airlock.slot=%s", s, s)
		}
	}
}

// TestShippedFwEnvConfigWithFwPrintenv: the real fw_printenv, given the
// shipped fw_env.config in a device directory, reads the environment the
// simulated U-Boot counted in.
func TestShippedFwEnvConfigWithFwPrintenv(t *testing.T) {
	tool := boot.RequireTool(t, "fw_printenv")
	d, u := newBoard(t, 0)
	if got := u.powerOn(); got != boot.SlotB {
		t.Fatalf("booted %q, want B", got)
	}
	conf, err := filepath.Abs(filepath.Join(examples, "uboot", "fw_env.config"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "-c", conf, "bootcount", "bootlimit", "boot_slot", "upgrade_available")
	cmd.Dir = d.Config().Dir
	out, err := cmd.CombinedOutput()
	want := "bootcount=1\nbootlimit=1\nboot_slot=B\nupgrade_available=1\n"
	if err != nil || string(out) != want {
		t.Fatalf("fw_printenv: %v\n got: %q\nwant: %q", err, out, want)
	}
}
