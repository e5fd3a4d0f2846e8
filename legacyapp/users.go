package legacyapp

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// User is an account that can log in.
type User struct {
	ID       string
	Username string
	Roles    []string
	// Email is the user's verified email: what links an identity of a
	// trusted IdP to this user (UserByVerifiedEmail).
	Email string
	// PasswordHash is the bcrypt hash of the password.
	PasswordHash []byte
	// APIKeyHash is the SHA-256 of the user's API key ("ak_…"), the
	// app's own credential for its JSON API; nil: no key.
	APIKeyHash []byte
}

// HashAPIKey is the APIKeyHash of key.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// Demo password hashes, bcrypt at the minimum cost so that tests stay
// fast. A real deployment uses bcrypt.DefaultCost or more.
const (
	aliceHash = "$2a$04$UzHBOQT/7DKNw/jGq95iAeamUtwBM/Zkuqm6Hh3GTkaYpLVeQ45Ga" // alice-password
	bobHash   = "$2a$04$cwliOMzrmTYLWroK4B0FfuV7IXI6.Mjrc6r2NZ3Bz0sit5C.CP/8m" // bob-password
	// dummyHash is compared against when the username is unknown, so that
	// a failed login takes as long whether or not the user exists.
	dummyHash = "$2a$04$m6KzamTA3./nmoMiSqsx4e6guXyzit282u48Mm8UYj.dLemZAm3qK"
)

// Demo API keys: the demo's documented credentials (stored hashed, as a
// real app would; the keys themselves are published for the demo).
const (
	AliceAPIKey = "ak_alice_0f1e2d3c4b5a69788796a5b4"
	BobAPIKey   = "ak_bob_8a7b6c5d4e3f20112233aabb"
)

// DemoUsers returns the demo accounts: alice / alice-password (user ID "1",
// role user, alice@example.com, AliceAPIKey) and bob / bob-password (user
// ID "2", roles user and admin, bob@example.com, BobAPIKey).
func DemoUsers() []User {
	return []User{
		{ID: "1", Username: "alice", Roles: []string{"user"}, Email: "alice@example.com", PasswordHash: []byte(aliceHash), APIKeyHash: HashAPIKey(AliceAPIKey)},
		{ID: "2", Username: "bob", Roles: []string{"user", "admin"}, Email: "bob@example.com", PasswordHash: []byte(bobHash), APIKeyHash: HashAPIKey(BobAPIKey)},
	}
}

// userDirectory holds the users, in configuration order, and finds them by
// name. It is read-only after construction.
type userDirectory struct {
	list       []User
	byUsername map[string]int
}

func newUserDirectory(users []User) (userDirectory, error) {
	d := userDirectory{
		list:       make([]User, 0, len(users)),
		byUsername: make(map[string]int, len(users)),
	}
	ids := make(map[string]bool, len(users))
	for i, u := range users {
		switch {
		case u.ID == "":
			return d, fmt.Errorf("legacyapp: Config.Users[%d].ID is empty", i)
		case u.Username == "":
			return d, fmt.Errorf("legacyapp: Config.Users[%d].Username is empty", i)
		case ids[u.ID]:
			return d, fmt.Errorf("legacyapp: Config.Users[%d].ID %q is a duplicate", i, u.ID)
		}
		if _, dup := d.byUsername[u.Username]; dup {
			return d, fmt.Errorf("legacyapp: Config.Users[%d].Username %q is a duplicate", i, u.Username)
		}
		if _, err := bcrypt.Cost(u.PasswordHash); err != nil {
			return d, fmt.Errorf("legacyapp: Config.Users[%d].PasswordHash: %w", i, err)
		}
		u.Roles = slices.Clone(u.Roles)
		u.PasswordHash = slices.Clone(u.PasswordHash)
		ids[u.ID] = true
		d.byUsername[u.Username] = len(d.list)
		d.list = append(d.list, u)
	}
	return d, nil
}

// byEmail returns the user whose email is email (case-insensitively).
func (d userDirectory) byEmail(email string) (User, bool) {
	for _, u := range d.list {
		if u.Email != "" && strings.EqualFold(u.Email, email) {
			u.Roles = slices.Clone(u.Roles)
			return u, true
		}
	}
	return User{}, false
}

// byAPIKey returns the user whose API key is key, comparing hashes in
// constant time.
func (d userDirectory) byAPIKey(key string) (User, bool) {
	h := HashAPIKey(key)
	for _, u := range d.list {
		if len(u.APIKeyHash) > 0 && subtle.ConstantTimeCompare(u.APIKeyHash, h) == 1 {
			u.Roles = slices.Clone(u.Roles)
			return u, true
		}
	}
	return User{}, false
}

// authenticate returns the user with the given name and password. An
// unknown name costs one bcrypt comparison too.
func (d userDirectory) authenticate(username, password string) (User, bool) {
	i, found := d.byUsername[username]
	hash := []byte(dummyHash)
	if found {
		hash = d.list[i].PasswordHash
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !found {
		return User{}, false
	}
	return d.list[i], true
}
