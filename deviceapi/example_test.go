package deviceapi_test

import (
	"fmt"

	"github.com/airlockfw/airlock/deviceapi"
)

// The agent builds a check-in from its boot control, checks it as the
// server will, and decodes the answer strictly.
func Example() {
	req := deviceapi.CheckinRequest{CurrentVersion: "1.0.0", SecurityCounter: 3,
		State: deviceapi.StateRebooted, Slot: deviceapi.SlotA}
	fmt.Println(req.Validate())

	var resp deviceapi.CheckinResponse
	err := deviceapi.DecodeResponse([]byte(`{"poll_interval_seconds":60,"poll_interval_seconds":1}`), &resp)
	fmt.Println(err)
	// Output:
	// <nil>
	// invalid device API message: duplicate key "poll_interval_seconds"
}
