package i18n

import "maps"

// enAccounts are the English messages of logins by passkey and OIDC and
// of the account pages.
var enAccounts = map[string]string{
	"login.disabled": "This account is disabled. Ask an administrator.",
}

// jaAccounts are enAccounts in Japanese.
var jaAccounts = map[string]string{
	"login.disabled": "このアカウントは無効になっています。管理者に連絡してください。",
}

func init() {
	maps.Copy(en, enAccounts)
	maps.Copy(ja, jaAccounts)
}
