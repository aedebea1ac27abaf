# Airlock A/B boot script for U-Boot (hush). Compile with
#   mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
# and put boot.scr on a partition only the vendor writes, or inside the
# signed FIT. Run from bootcmd/altbootcmd (see env.txt).
#
# Reads boot_slot, airlock_good and airlock_fallback; writes nothing.
# Counting is U-Boot's (CONFIG_BOOTCOUNT_LIMIT + CONFIG_BOOTCOUNT_ENV): before
# this runs U-Boot has incremented and saved bootcount (while
# upgrade_available=1), and it runs altbootcmd instead of bootcmd once
# bootcount > bootlimit. So with bootlimit=N the trial gets N attempts.

if test "${airlock_fallback}" = "1"; then
    # altbootcmd: the trial used up bootlimit attempts without being
    # committed: boot the last known good slot.
    setenv slot "${airlock_good}"
else
    setenv slot "${boot_slot}"
fi

# Partitions: 2 = slot A, 3 = slot B, 4 = recovery.
for s in ${slot} ${airlock_good} R; do
    if test "${s}" = "A"; then setenv part 2;
    elif test "${s}" = "B"; then setenv part 3;
    else setenv part 4; fi

    # Verified-boot hand-off: bootm checks the FIT configuration signature
    # against the key in U-Boot's DTB (required = "conf") before running
    # anything, and returns only on failure. The kernel learns which slot it
    # runs; Airlock's boot verifier and agent read airlock.slot.
    if load mmc 0:${part} ${loadaddr} /boot/fitImage; then
        setenv bootargs "${airlock_bootargs} root=/dev/mmcblk0p${part} ro airlock.slot=${s}"
        bootm ${loadaddr}
    fi
    echo "airlock: slot ${s} failed to load or verify"
done
echo "airlock: nothing bootable"
reset
