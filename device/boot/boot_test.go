package boot

import (
	"errors"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
)

func TestNextBootsTrialThenFallsBack(t *testing.T) {
	tests := []struct {
		name string
		st   State
		want Slot
	}{
		{"committed A", State{Good: SlotA}, SlotA},
		{"committed B", State{Good: SlotB, BootLimit: 3}, SlotB},
		{"fresh trial boots trial", State{Good: SlotA, Trial: SlotB}, SlotB},
		{"trial with default limit exhausted after one attempt", State{Good: SlotA, Trial: SlotB, BootCount: 1}, SlotA},
		{"trial below explicit limit", State{Good: SlotA, Trial: SlotB, BootCount: 2, BootLimit: 3}, SlotB},
		{"trial at explicit limit falls back", State{Good: SlotA, Trial: SlotB, BootCount: 3, BootLimit: 3}, SlotA},
		{"trial beyond limit falls back", State{Good: SlotB, Trial: SlotA, BootCount: 9, BootLimit: 3}, SlotB},
		{"bad trial is never booted", State{Good: SlotA, Trial: SlotB, Bad: []Slot{SlotB}}, SlotA},
		{"bad good boots the other slot", State{Good: SlotA, Bad: []Slot{SlotA}}, SlotB},
		{"bad good and exhausted trial boots the tried slot", State{Good: SlotA, Trial: SlotB, BootCount: 1, Bad: []Slot{SlotA}}, SlotB},
		{"bad good boots untried trial", State{Good: SlotB, Trial: SlotA, Bad: []Slot{SlotB}}, SlotA},
		{"both bad boots recovery", State{Good: SlotA, Bad: []Slot{SlotA, SlotB}}, SlotRecovery},
		{"both bad with trial boots recovery", State{Good: SlotA, Trial: SlotB, Bad: []Slot{SlotA, SlotB}}, SlotRecovery},
		{"no good slot boots recovery", State{}, SlotRecovery},
		{"recovery as good boots recovery", State{Good: SlotRecovery}, SlotRecovery},
		{"garbage good with trial still tries trial", State{Good: "X", Trial: SlotA}, SlotA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.Next(); got != tt.want {
				t.Errorf("%+v.Next() = %q, want %q", tt.st, got, tt.want)
			}
		})
	}
}

func TestValidateRejectsImpossibleStates(t *testing.T) {
	tests := []struct {
		name string
		st   State
		ok   bool
	}{
		{"committed", State{Good: SlotA}, true},
		{"trial", State{Good: SlotA, Trial: SlotB, BootCount: 1, BootLimit: 5, Bad: []Slot{SlotA}}, true},
		{"both bad", State{Good: SlotB, Bad: []Slot{SlotA, SlotB}}, true},
		{"empty good", State{}, false},
		{"recovery as good", State{Good: SlotRecovery}, false},
		{"unknown good", State{Good: "C"}, false},
		{"lowercase good", State{Good: "a"}, false},
		{"trial equals good", State{Good: SlotA, Trial: SlotA}, false},
		{"recovery trial", State{Good: SlotA, Trial: SlotRecovery}, false},
		{"negative boot count", State{Good: SlotA, BootCount: -1}, false},
		{"huge boot count", State{Good: SlotA, BootCount: MaxBootCounter + 1}, false},
		{"negative boot limit", State{Good: SlotA, BootLimit: -1}, false},
		{"unsorted bad", State{Good: SlotA, Bad: []Slot{SlotB, SlotA}}, false},
		{"duplicate bad", State{Good: SlotA, Bad: []Slot{SlotA, SlotA}}, false},
		{"recovery bad", State{Good: SlotA, Bad: []Slot{SlotRecovery}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.st.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidState) {
				t.Fatalf("Validate() = %v, want ErrInvalidState", err)
			}
		})
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unknown backend", Config{Backend: "efi", Path: "x"}},
		{"empty backend", Config{Path: "x"}},
		{"empty path", Config{Backend: BackendSim}},
		{"sim with redundant copy", Config{Backend: BackendSim, Path: "x", RedundPath: "y"}},
		{"grubenv with env size", Config{Backend: BackendGrubEnv, Path: "x", EnvSize: 0x4000}},
		{"uboot env too small", Config{Backend: BackendUBootEnv, Path: "x", EnvSize: MinEnvSize - 1}},
		{"uboot env too large", Config{Backend: BackendUBootEnv, Path: "x", EnvSize: MaxEnvSize + 1}},
		{"uboot negative offset", Config{Backend: BackendUBootEnv, Path: "x", Offset: -1}},
		{"uboot redundant offset without path", Config{Backend: BackendUBootEnv, Path: "x", RedundOffset: 0x4000}},
		{"uboot overlapping copies", Config{Backend: BackendUBootEnv, Path: "x", RedundPath: "./x", RedundOffset: 0x2000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(durable.OS, tt.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("Open(%+v) = %v, want ErrConfig", tt.cfg, err)
			}
		})
	}
	for _, cfg := range []Config{
		{Backend: BackendSim, Path: "x"},
		{Backend: BackendGrubEnv, Path: "x"},
		{Backend: BackendUBootEnv, Path: "x"},
		{Backend: BackendUBootEnv, Path: "x", RedundPath: "x", RedundOffset: DefaultEnvSize},
	} {
		c, err := Open(durable.OS, cfg)
		if err != nil {
			t.Fatalf("Open(%+v) = %v", cfg, err)
		}
		if c.Name() != cfg.Backend {
			t.Errorf("Open(%+v).Name() = %q", cfg, c.Name())
		}
	}
}
