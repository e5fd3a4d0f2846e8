package fleet

import (
	"context"
	"errors"
)

// Whose fleet this is. Two apps sharing a Redis must never share keys:
// their counts, run-time modes and revocations would merge. The keys'
// prefix is per app by default (DefaultPrefix + ":" + App, App defaulting
// to the Bridge's Audience); every flush notes its app in {p}:apps, so
// that a report names whose counts it holds, and apps that were given one
// Prefix show (Report.SharedWith) and are logged.

// appPrefix is the default Prefix of an app's fleet.
func appPrefix(app string) string { return DefaultPrefix + ":" + app }

// errUnnamed: a Fleet with neither Config.App nor Config.Prefix has no
// keys until it is attached to a Bridge.
var errUnnamed = errors.New("fleet: no keys: name the app (Config.App, or Config.Prefix), or give the Fleet to bridge.Config.Fleet")

// keys returns the fleet's keys, or errUnnamed.
func (f *Fleet) keys() (keys, error) {
	if k := f.k.Load(); k != nil {
		return *k, nil
	}
	return keys{}, errUnnamed
}

// app names the app: Config.App, else the attached Bridge's Audience,
// else "" (an unattached Fleet named by its Prefix alone).
func (f *Fleet) app() string {
	if f.cfg.App != "" {
		return f.cfg.App
	}
	if b := f.b.Load(); b != nil {
		return b.Config().Audience
	}
	return ""
}

// warnOldKeys warns when this fleet's keys are the per-app default and the
// keys of releases before it, under DefaultPrefix alone, hold run-time
// modes, published modes or revocations: this fleet does not read them.
func (f *Fleet) warnOldKeys(ctx context.Context, k keys) {
	if f.cfg.Prefix != "" || k.prefix == DefaultPrefix {
		return
	}
	old := newKeys(DefaultPrefix)
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	n, err := f.cfg.Redis.Exists(ctx, old.modes(), old.effective(), old.revoked()).Result()
	if err != nil || n == 0 {
		return
	}
	f.log().Warn("fleet: keys under the prefix of older releases are not this fleet's: its keys are now per app. "+
		"To keep using them (their run-time modes, revocations and counts), set fleet.Config.Prefix to fleet.DefaultPrefix, "+
		"unless other apps wrote there too; otherwise delete them once every instance runs this release (docs/upgrading.md)",
		"old_prefix", DefaultPrefix, "prefix", k.prefix, "app", f.app())
}
