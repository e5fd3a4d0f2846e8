package legacyapp

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// The HTML pages are the legacy part of the app: they read the session
// directly from the store, until they are migrated (Config.Carts set): then
// they identify the user through CurrentUser, like the API, and keep carts
// by user outside the session.

//go:embed templates/*.html
var templateFS embed.FS

// Cart limits keep a session well below the store's size cap.
const (
	maxCartItems   = 20
	maxItemNameLen = 64 // runes
)

// pageData is what every page template receives.
type pageData struct {
	User     Principal // zero when nobody is logged in
	Cart     []string
	Error    string
	Username string // the login form's username, after a failed attempt
}

// parsePages parses each page with the shared layout.
func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template)
	for _, name := range []string{"login", "profile", "cart"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

func (a *App) profile(w http.ResponseWriter, r *http.Request) {
	_, p, ok := a.pageUser(w, r)
	if !ok {
		return
	}
	a.render(w, r, http.StatusOK, "profile", pageData{User: p})
}

func (a *App) cart(w http.ResponseWriter, r *http.Request) {
	s, p, ok := a.pageUser(w, r)
	if !ok {
		return
	}
	cart, err := a.cartOf(r, s, p)
	if err != nil {
		a.saveFailed(w, r, "cart: read", err)
		return
	}
	a.render(w, r, http.StatusOK, "cart", pageData{User: p, Cart: cart})
}

// cartOf returns the user's cart: from the cart store once the pages are
// migrated, from the session before.
func (a *App) cartOf(r *http.Request, s *sessions.Session, p Principal) ([]string, error) {
	if a.carts != nil {
		return a.carts.Items(r.Context(), p.UserID)
	}
	return slices.Clone(stringsValue(s.Values[keyCart])), nil
}

// pageUser identifies the user of a page: through CurrentUser once the
// pages are migrated (Config.Carts set; the session is nil then), else
// from the session. It redirects to /login or answers 503 and returns false
// when it cannot.
func (a *App) pageUser(w http.ResponseWriter, r *http.Request) (*sessions.Session, Principal, bool) {
	if a.carts == nil {
		return a.pageSession(w, r)
	}
	p, err := a.currentUser(r)
	switch {
	case err == nil:
		return nil, p, true
	case errors.Is(err, ErrUnavailable), errors.Is(err, redisstore.ErrUnavailable):
		a.unavailable(w, r, err)
	case errors.Is(err, ErrUnauthenticated):
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	default:
		a.log.ErrorContext(r.Context(), "identify page user", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
	return nil, Principal{}, false
}

// addCartItem appends the form's item to the user's cart.
func (a *App) addCartItem(w http.ResponseWriter, r *http.Request) {
	s, p, ok := a.pageUser(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	cart, err := a.cartOf(r, s, p)
	if err != nil {
		a.saveFailed(w, r, "cart: read", err)
		return
	}
	item := strings.TrimSpace(r.PostForm.Get("item"))
	var problem string
	switch {
	case item == "":
		problem = "Enter an item name."
	case utf8.RuneCountInString(item) > maxItemNameLen || !utf8.ValidString(item):
		problem = "Item names are at most 64 characters."
	case len(cart) >= maxCartItems:
		problem = "Your cart is full."
	}
	if problem != "" {
		a.render(w, r, http.StatusBadRequest, "cart", pageData{User: p, Cart: cart, Error: problem})
		return
	}
	if a.carts != nil {
		err = a.carts.Add(r.Context(), p.UserID, item)
	} else {
		s.Values[keyCart] = append(cart, item)
		err = a.store.Save(r, w, s)
	}
	if err != nil {
		a.saveFailed(w, r, "cart: save", err)
		return
	}
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
}

// pageSession returns the session of a page request and its user. When
// nobody is logged in it redirects to the login page; when the store is
// down it answers 503; either way it returns false.
func (a *App) pageSession(w http.ResponseWriter, r *http.Request) (*sessions.Session, Principal, bool) {
	s, err := a.store.Get(r, a.sessionName)
	if err != nil {
		err = sessionError(err)
		switch {
		case errors.Is(err, ErrUnavailable):
			a.unavailable(w, r, err)
			return nil, Principal{}, false
		case errors.Is(err, ErrUnauthenticated):
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return nil, Principal{}, false
		default:
			a.log.ErrorContext(r.Context(), "read session", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return nil, Principal{}, false
		}
	}
	p, ok := principalFrom(s)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil, Principal{}, false
	}
	return s, p, true
}

// render executes a page into a buffer first, so that a template error
// never sends half a page.
func (a *App) render(w http.ResponseWriter, r *http.Request, status int, page string, data pageData) {
	var buf bytes.Buffer
	if err := a.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		a.log.ErrorContext(r.Context(), "render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// unavailable answers 503 because the session store cannot be reached: a
// caller whose session cannot be read is not logged out, only asked to
// retry.
func (a *App) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.log.WarnContext(r.Context(), "session store unavailable", "err", err)
	w.Header().Set("Retry-After", "1")
	if acceptsJSON(r) {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: "unavailable", Reason: "session store unavailable"})
		return
	}
	http.Error(w, "The session store is unavailable; please retry in a moment.", http.StatusServiceUnavailable)
}

// saveFailed answers a failure to read or save a session or cart.
func (a *App) saveFailed(w http.ResponseWriter, r *http.Request, msg string, err error) {
	if errors.Is(err, redisstore.ErrUnavailable) || errors.Is(err, ErrUnavailable) {
		a.unavailable(w, r, err)
		return
	}
	a.log.ErrorContext(r.Context(), msg, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
