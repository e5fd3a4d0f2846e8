package legacyapp

// Order is an order of a user, as the JSON API shows it.
type Order struct {
	ID         string `json:"id"`
	Item       string `json:"item"`
	Quantity   int    `json:"quantity"`
	TotalCents int    `json:"total_cents"`
	Status     string `json:"status"`
	PlacedAt   string `json:"placed_at"` // RFC 3339
}

// demoOrders returns the fake order history of the demo users, by user ID.
// Order IDs are unique across users.
func demoOrders() map[string][]Order {
	return map[string][]Order{
		"1": {
			{ID: "1001", Item: "espresso beans, 1 kg", Quantity: 2, TotalCents: 3980, Status: "delivered", PlacedAt: "2026-10-02T09:15:00Z"},
			{ID: "1002", Item: "milk frother", Quantity: 1, TotalCents: 2450, Status: "shipped", PlacedAt: "2026-11-20T17:40:00Z"},
		},
		"2": {
			{ID: "2001", Item: "mechanical keyboard", Quantity: 1, TotalCents: 12900, Status: "delivered", PlacedAt: "2026-09-14T12:00:00Z"},
			{ID: "2002", Item: "usb-c cable", Quantity: 3, TotalCents: 2697, Status: "processing", PlacedAt: "2026-11-28T08:05:00Z"},
		},
	}
}

// ordersOf returns the orders of p, never nil: none for an external
// identity, whatever its subject.
func (a *App) ordersOf(p Principal) []Order {
	if o := a.orders[p.UserID]; o != nil && p.Issuer == "" {
		return o
	}
	return []Order{}
}
