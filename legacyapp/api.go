package legacyapp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// The JSON API identifies its caller only through a.currentUser, never
// through the session store, so that the identification can be swapped.

type meResponse struct {
	UserID     string   `json:"user_id"`
	Username   string   `json:"username"`
	Roles      []string `json:"roles"`
	AuthSource string   `json:"auth_source"`
	// Issuer names the identity provider of an identity that no local
	// user is linked to.
	Issuer string `json:"issuer,omitempty"`
}

type userResponse struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Roles    []string `json:"roles"`
}

type errorResponse struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func (a *App) me(w http.ResponseWriter, r *http.Request) {
	p, ok := a.apiPrincipal(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, meResponse{
		UserID:     p.UserID,
		Username:   p.Username,
		Roles:      nonNil(p.Roles),
		AuthSource: p.Source,
		Issuer:     p.Issuer,
	})
}

func (a *App) listOrders(w http.ResponseWriter, r *http.Request) {
	p, ok := a.apiPrincipal(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Orders []Order `json:"orders"`
	}{a.ordersOf(p)})
}

func (a *App) getOrder(w http.ResponseWriter, r *http.Request) {
	p, ok := a.apiPrincipal(w, r)
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	for _, o := range a.ordersOf(p) {
		if o.ID == id {
			writeJSON(w, http.StatusOK, o)
			return
		}
	}
	// Another user's order is indistinguishable from a missing one.
	writeJSON(w, http.StatusNotFound, errorResponse{Error: "not_found", Reason: "no such order"})
}

func (a *App) listUsers(w http.ResponseWriter, r *http.Request) {
	p, ok := a.apiPrincipal(w, r)
	if !ok {
		return
	}
	if !p.HasRole("admin") {
		writeJSON(w, http.StatusForbidden, errorResponse{Error: "forbidden", Reason: "role admin required"})
		return
	}
	users := make([]userResponse, 0, len(a.users.list))
	for _, u := range a.users.list {
		users = append(users, userResponse{ID: u.ID, Username: u.Username, Roles: nonNil(u.Roles)})
	}
	writeJSON(w, http.StatusOK, struct {
		Users []userResponse `json:"users"`
	}{users})
}

// apiPrincipal returns the caller of an API request. When there is none it
// answers the request (401, 503 or 500) and returns false.
func (a *App) apiPrincipal(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	// The app's own credential first: an API key, whatever else came.
	if key, ok := apiKey(r); ok {
		u, ok := a.users.byAPIKey(key)
		if !ok {
			writeJSON(w, http.StatusUnauthorized, errorResponse{Error: "unauthenticated", Reason: ReasonAPIKeyInvalid})
			return Principal{}, false
		}
		return Principal{UserID: u.ID, Username: u.Username, Roles: u.Roles, Source: SourceAPIKey}, true
	}
	p, err := a.currentUser(r)
	if err == nil {
		return p, true
	}
	var unauth *UnauthenticatedError
	switch {
	case errors.As(err, &unauth):
		writeJSON(w, http.StatusUnauthorized, errorResponse{Error: "unauthenticated", Reason: unauth.Reason})
	case errors.Is(err, ErrUnauthenticated):
		writeJSON(w, http.StatusUnauthorized, errorResponse{Error: "unauthenticated", Reason: "unauthenticated"})
	case errors.Is(err, ErrUnavailable), errors.Is(err, redisstore.ErrUnavailable):
		a.log.WarnContext(r.Context(), "identify caller", "err", err)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: "unavailable", Reason: "session store unavailable"})
	default:
		a.log.ErrorContext(r.Context(), "identify caller", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: "internal", Reason: "internal error"})
	}
	return Principal{}, false
}

// apiKey returns the API key of "Authorization: Bearer ak_…".
func apiKey(r *http.Request) (string, bool) {
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	return key, strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(key, apiKeyPrefix)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
