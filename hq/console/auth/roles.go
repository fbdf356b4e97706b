// Package auth holds the console's accounts: roles and what each may do,
// users limited to the sites they are granted, argon2id password hashes,
// login rate limiting, and the accounts and sessions store (bbolt).
package auth

import (
	"fmt"
	"slices"
)

// Role is what an account is for.
type Role string

// The roles of the console.
const (
	// Administrator may do everything, including managing accounts.
	Administrator Role = "administrator"
	// Operator watches doors, devices and events and sends door commands.
	Operator Role = "operator"
	// Clerk (enrollment clerk) handles people and enrollments.
	Clerk Role = "clerk"
	// Auditor reads everything that is not personal data, and the audit
	// log; changes nothing.
	Auditor Role = "auditor"
)

// Roles lists every role.
var Roles = []Role{Administrator, Operator, Clerk, Auditor}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q, want one of %v", ErrInvalid, s, Roles)
}

// Perm is one thing a role may do; the console checks one Perm per route.
type Perm string

// The permissions.
const (
	// PermView is seeing the console at all (home, own account).
	PermView Perm = "view"
	// PermFleet is the fleet page: sites, devices, doors.
	PermFleet Perm = "fleet"
	// PermEvents is the events page, its export and the live feed.
	PermEvents Perm = "events"
	// PermNames is seeing people's names (personal data; each view is
	// audited).
	PermNames Perm = "names"
	// PermCommand is sending door commands.
	PermCommand Perm = "command"
	// PermEnroll is approving and rejecting the enrollments devices sent.
	PermEnroll Perm = "enroll"
	// PermImport is importing CSV tables into the registry (people,
	// credentials, doors, levels, schedules, ...).
	PermImport Perm = "import"
	// PermAudit is reading and exporting the audit log.
	PermAudit Perm = "audit"
	// PermAlarms is seeing the alarm list.
	PermAlarms Perm = "alarms"
	// PermAlarmAck is acknowledging alarms (with a comment).
	PermAlarmAck Perm = "alarm_ack"
	// PermRecords is reading the registry's records page by page (people
	// and credentials by their opaque IDs; names need PermNames).
	PermRecords Perm = "records"
	// PermRecordsEdit is creating, changing and deleting registry records
	// in the console's forms, and importing a CRL.
	PermRecordsEdit Perm = "records_edit"
	// PermRevoke is revoking a credential (a lost or stolen card).
	PermRevoke Perm = "revoke"
)

// grants is the table of what each role may do.
var grants = map[Role][]Perm{
	Administrator: {PermView, PermFleet, PermEvents, PermNames, PermCommand, PermEnroll, PermImport, PermAudit, PermAlarms, PermAlarmAck,
		PermRecords, PermRecordsEdit, PermRevoke},
	Operator: {PermView, PermFleet, PermEvents, PermCommand, PermAlarms, PermAlarmAck},
	Clerk:    {PermView, PermEvents, PermNames, PermEnroll, PermRecords, PermRevoke},
	Auditor:  {PermView, PermFleet, PermEvents, PermAudit, PermAlarms, PermRecords},
}

// Can reports whether role r has permission p.
func (r Role) Can(p Perm) bool { return slices.Contains(grants[r], p) }

// AllSites in User.Sites grants every site.
const AllSites = "*"
