package console

import (
	"encoding/hex"

	"github.com/tobira-ac/tobira/sync/proto"
)

// checkForgive checks the credential of a forgive_apb command (the hex
// key events name credentials by), and drops it from other commands.
func checkForgive(f *commandForm) {
	if f.Action != proto.ActionForgiveAPB {
		f.Credential = ""
		return
	}
	if f.Credential == "" {
		f.Errors["credential"] = "command.need_credential"
		return
	}
	if _, err := hex.DecodeString(f.Credential); err != nil || len(f.Credential) > proto.MaxCredentialLen {
		f.Errors["credential"] = "command.bad_credential"
	}
}

// Mode returns a door mode (a device's, as the fleet shows it, or a
// command's) in the page's language; an unknown one as it is.
func (p page) Mode(m string) string {
	if m == "" {
		return "-"
	}
	if key := "mode." + m; p.L.Has(key) {
		return p.L.T(key)
	}
	return m
}
