package legacyapp

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/sessions"
)

// maxFormBytes caps the body of the app's forms.
const maxFormBytes = 64 << 10

// sessionDeleter is implemented by stores that can delete a session by ID
// without writing a cookie, such as *redisstore.Store.
type sessionDeleter interface {
	Delete(ctx context.Context, id string) error
}

func (a *App) loginForm(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, "login", pageData{})
}

// login checks the form's username and password and logs the user in to a
// fresh session: a session the request already had is deleted, never
// reused, so that an ID planted before login (session fixation) is worth
// nothing after it.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	username := strings.TrimSpace(r.PostForm.Get("username"))
	user, ok := a.users.authenticate(username, r.PostForm.Get("password"))
	if !ok {
		a.log.InfoContext(r.Context(), "login failed")
		a.render(w, r, http.StatusUnauthorized, "login", pageData{
			Error:    "Invalid username or password.",
			Username: username,
		})
		return
	}

	old, err := a.store.Get(r, a.sessionName)
	if err != nil {
		err = sessionError(err)
		switch {
		case errors.Is(err, ErrUnavailable):
			a.unavailable(w, r, err)
			return
		case errors.Is(err, ErrUnauthenticated):
			// A cookie that does not verify names no session to discard.
		default:
			// The values are unreadable but the ID is known: discard it.
			a.log.WarnContext(r.Context(), "login: discard unreadable session", "err", err)
		}
	}
	opts := cloneOptions(old.Options)
	if old.ID != "" {
		if err := a.discard(r, w, old); err != nil {
			a.saveFailed(w, r, "login: discard old session", err)
			return
		}
	}

	s := sessions.NewSession(a.store, a.sessionName)
	s.Options = opts
	s.IsNew = true
	s.Values[keyUserID] = user.ID
	s.Values[keyUsername] = user.Username
	s.Values[keyRoles] = slices.Clone(user.Roles)
	if err := a.store.Save(r, w, s); err != nil {
		a.saveFailed(w, r, "login: save session", err)
		return
	}
	a.log.InfoContext(r.Context(), "login", "user_id", user.ID)
	http.Redirect(w, r, "/profile", http.StatusSeeOther)
}

// logout deletes the session and expires its cookie. Browsers are sent to
// the login page; clients that accept JSON get 204.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	s, err := a.store.Get(r, a.sessionName)
	if err != nil {
		err = sessionError(err)
		if errors.Is(err, ErrUnavailable) {
			a.unavailable(w, r, err)
			return
		}
		// Invalid cookie or unreadable values: delete what can be deleted.
	}
	s.Options = expiredOptions(s.Options)
	if err := a.store.Save(r, w, s); err != nil {
		a.saveFailed(w, r, "logout: delete session", err)
		return
	}
	if acceptsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// discard deletes s from the store, without a cookie when the store allows
// it (the fresh session's cookie follows), else by saving it expired.
func (a *App) discard(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	if d, ok := a.store.(sessionDeleter); ok {
		return d.Delete(r.Context(), s.ID)
	}
	s.Options = expiredOptions(s.Options)
	return a.store.Save(r, w, s)
}

// cloneOptions returns a copy of opts, so that changing it affects neither
// the store's defaults nor another session; nil stays nil.
func cloneOptions(opts *sessions.Options) *sessions.Options {
	if opts == nil {
		return nil
	}
	o := *opts
	return &o
}

// expiredOptions returns a copy of opts with MaxAge -1: saving a session
// with them deletes it and expires its cookie.
func expiredOptions(opts *sessions.Options) *sessions.Options {
	o := sessions.Options{Path: "/"}
	if opts != nil {
		o = *opts
	}
	o.MaxAge = -1
	return &o
}

func acceptsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}
