package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// registryRecords is the registry for the console's record pages
// (console.Records) and people's names (console.Names): kept open on
// PostgreSQL, or the bbolt file opened for each call so that admin
// commands can use it in between (sharedRegistry).
type registryRecords struct {
	reg *sharedRegistry
	log *slog.Logger
}

// useRegistry gives the console the registry reg (nil: none): CSV
// import, the record pages, and people's names for the roles allowed.
func (cs *consoleServer) useRegistry(reg *sharedRegistry, log *slog.Logger) {
	if reg == nil {
		return
	}
	cs.imp = registryImporter{reg}
	cs.records = &registryRecords{reg: reg, log: log}
}

// with calls fn with the registry.
func (rr registryRecords) with(fn func(*registry.Registry) error) error {
	return rr.reg.with(context.Background(), fn)
}

// List implements console.Records.
func (rr registryRecords) List(ctx context.Context, site string, kind policy.RecordKind, after string, limit int) (items []policy.Item, next string, err error) {
	err = rr.with(func(r *registry.Registry) error {
		items, next, err = r.List(ctx, site, kind, after, limit)
		return err
	})
	return items, next, err
}

// Get implements console.Records.
func (rr registryRecords) Get(site string, it policy.Item) (out policy.Item, ok bool, err error) {
	err = rr.with(func(r *registry.Registry) error {
		out, ok, err = r.Get(site, it)
		return err
	})
	return out, ok, err
}

// Apply implements console.Records.
func (rr registryRecords) Apply(ctx context.Context, site string, ch registry.Change) (a registry.Applied, err error) {
	err = rr.with(func(r *registry.Registry) error {
		a, err = r.Apply(ctx, site, ch)
		return err
	})
	return a, err
}

// Revoke implements console.Records.
func (rr registryRecords) Revoke(ctx context.Context, site string, c policy.CertRef) (a registry.Applied, err error) {
	err = rr.with(func(r *registry.Registry) error {
		a, err = r.Revoke(ctx, site, c)
		return err
	})
	return a, err
}

// ImportCRL implements console.Records.
func (rr registryRecords) ImportCRL(ctx context.Context, site string, der []byte, ca *x509.Certificate, now time.Time) (res registry.CRLImport, err error) {
	err = rr.with(func(r *registry.Registry) error {
		res, err = r.ImportCRL(ctx, site, der, ca, now)
		return err
	})
	return res, err
}

// Name implements console.Names: the name of the person holding
// credential at site; an error is logged and reads as no name.
func (rr registryRecords) Name(site, credential string) (string, bool) {
	var name string
	var ok bool
	err := rr.with(func(r *registry.Registry) error {
		var err error
		name, ok, err = r.PersonName(site, credential)
		return err
	})
	if err != nil {
		rr.log.Warn("console: name lookup", "site", site, "err", err)
	}
	return name, ok
}

// PersonCredentials implements console.People.
func (rr registryRecords) PersonCredentials(ctx context.Context, site, person string) (creds []string, err error) {
	err = rr.with(func(r *registry.Registry) error {
		creds, err = r.PersonCredentials(ctx, site, person)
		return err
	})
	return creds, err
}

// PersonNames implements console.PeopleNames.
func (rr registryRecords) PersonNames(site string, people []string) (names map[string]string, err error) {
	err = rr.with(func(r *registry.Registry) error {
		names, err = r.PersonNames(site, people)
		return err
	})
	return names, err
}

// SetNames implements console.PeopleNames.
func (rr registryRecords) SetNames(site string, names map[string]string) error {
	return rr.with(func(r *registry.Registry) error { return r.SetNames(site, names) })
}
