package boot_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

// An install flips the boot control to try slot B once; the bootloader
// counts the attempt; if B is not committed, the next boot falls back to A.
func Example() {
	dir, err := os.MkdirTemp("", "airlock-boot")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := boot.Config{
		Backend:    boot.BackendUBootEnv,
		Path:       filepath.Join(dir, "uboot.env"),
		RedundPath: filepath.Join(dir, "uboot-redund.env"),
		EnvSize:    0x4000,
	}
	// Provisioning: slot A is good.
	if err := boot.Init(durable.OS, cfg, boot.State{Good: boot.SlotA}); err != nil {
		log.Fatal(err)
	}
	ctl, err := boot.Open(durable.OS, cfg)
	if err != nil {
		log.Fatal(err)
	}
	st, err := ctl.Load()
	if err != nil {
		log.Fatal(err)
	}
	// After installing into B: try it once.
	st.Trial, st.BootCount = boot.SlotB, 0
	if err := ctl.Store(st); err != nil {
		log.Fatal(err)
	}
	fmt.Println("next boot:", st.Next())
	// The bootloader made one attempt (U-Boot increments bootcount).
	st.BootCount++
	fmt.Println("after a failed attempt:", st.Next())
	// Output:
	// next boot: B
	// after a failed attempt: A
}
