package fleet

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Modes returns the run-time mode overrides.
func (f *Fleet) Modes(ctx context.Context) (map[string]bridge.Mode, error) {
	k, err := f.keys()
	if err != nil {
		return nil, err
	}
	raw, err := f.cfg.Redis.HGetAll(ctx, k.modes()).Result()
	if err != nil {
		return nil, fmt.Errorf("fleet: read run-time modes: %w", err)
	}
	out := make(map[string]bridge.Mode, len(raw))
	for route, s := range raw {
		m, err := bridge.ParseMode(s)
		if err != nil {
			continue
		}
		out[route] = m
	}
	return out, nil
}

// SetMode overrides the mode of route on every instance (within their
// ModeRefreshInterval). The override is kept under the route's label
// (bridge.RouteLabel): a template with patterns and without are one route.
func (f *Fleet) SetMode(ctx context.Context, route string, m bridge.Mode) error {
	if err := bridge.CheckRouteMode(route, m); err != nil {
		return err
	}
	k, err := f.keys()
	if err != nil {
		return err
	}
	if err := f.cfg.Redis.HSet(ctx, k.modes(), bridge.RouteLabel(route), m.String()).Err(); err != nil {
		return fmt.Errorf("fleet: set run-time mode: %w", err)
	}
	return nil
}

// ResetMode drops the override of route: instances return to their
// configured mode.
func (f *Fleet) ResetMode(ctx context.Context, route string) error {
	k, err := f.keys()
	if err != nil {
		return err
	}
	// Under its label, and as written (an override set before labels).
	if err := f.cfg.Redis.HDel(ctx, k.modes(), bridge.RouteLabel(route), route).Err(); err != nil {
		return fmt.Errorf("fleet: reset run-time mode: %w", err)
	}
	return nil
}

// EffectiveModes returns the modes the instances published at their last
// flush, by route.
func (f *Fleet) EffectiveModes(ctx context.Context) (map[string]string, error) {
	k, err := f.keys()
	if err != nil {
		return nil, err
	}
	m, err := f.cfg.Redis.HGetAll(ctx, k.effective()).Result()
	if err != nil {
		return nil, fmt.Errorf("fleet: read effective modes: %w", err)
	}
	return m, nil
}

// refreshModes applies the run-time mode overrides stored in Redis to b.
// A fleet override that disappears (ResetMode) returns its route to the
// configured mode; a route the fleet never overrode keeps whatever
// Bridge.SetMode set in this process.
func (f *Fleet) refreshModes(ctx context.Context, b *bridge.Bridge) error {
	overrides, err := f.Modes(ctx)
	if err != nil {
		return err
	}
	f.modesMu.Lock()
	defer f.modesMu.Unlock()
	for route, m := range overrides {
		if err := b.SetMode(route, m); err != nil {
			f.log().Warn("fleet: run-time mode not applied", "route", route, "error", err)
			continue
		}
		f.fleetModes[route] = struct{}{}
	}
	for route := range f.fleetModes {
		if _, ok := overrides[route]; !ok {
			b.ResetMode(route)
			delete(f.fleetModes, route)
		}
	}
	return nil
}

func (f *Fleet) runModes(ctx context.Context, b *bridge.Bridge) {
	mctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	if err := f.refreshModes(mctx, b); err != nil {
		f.log().LogAttrs(ctx, slog.LevelDebug, "fleet: run-time modes not refreshed; keeping the last known",
			slog.String("error", err.Error()))
	}
}
