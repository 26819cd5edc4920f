package surveys

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Survey API: a resource server that accepts only access tokens for
// APIResource, issued by the identity provider to a user of a tenant that
// signed up, and authorizes by the app roles in the token. It keeps the
// surveys in memory, per tenant.

// App roles of the Survey API, assigned to users in their tenant.
const (
	RoleAdmin   = "SurveyAdmin"   // every survey of the tenant
	RoleCreator = "SurveyCreator" // create, edit and publish one's own
	RoleReader  = "SurveyReader"  // read the tenant's surveys
)

// Survey is a survey as the API serves it.
type Survey struct {
	ID        int       `json:"id"`
	Tenant    string    `json:"tenant"`
	Title     string    `json:"title"`
	Question  string    `json:"question"`
	Owner     string    `json:"owner"` // display name
	OwnerID   string    `json:"-"`     // object id: who may publish
	Published bool      `json:"published"`
	Created   time.Time `json:"created"`
	// Contributors are the usernames the owner (or a SurveyAdmin) invited
	// to edit the survey with them; they hold SurveyCreator themselves.
	Contributors []string `json:"contributors"`
	// CanEdit and CanManage say what the caller of GET /surveys may do:
	// edit (the owner, a contributor, a SurveyAdmin), and delete or add
	// contributors (the owner, a SurveyAdmin). The API checks again on
	// every call; these only spare the pages buttons that would be refused.
	CanEdit   bool `json:"canEdit"`
	CanManage bool `json:"canManage"`
}

// mayEdit reports whether c may change s's title and question.
func (s *Survey) mayEdit(c claims) bool {
	return s.mayManage(c) || slices.Contains(s.Contributors, strings.ToLower(c.Username))
}

// mayManage reports whether c may delete s or invite contributors to it.
func (s *Survey) mayManage(c claims) bool { return s.OwnerID == c.Oid || c.hasRole(RoleAdmin) }

type api struct {
	keys    *keySet
	tenants *Tenants

	mu      sync.Mutex
	next    int
	surveys []*Survey
}

func newAPI(keys *keySet, tenants *Tenants) *api {
	return &api{keys: keys, tenants: tenants, next: 1}
}

func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /published", a.published)
	mux.HandleFunc("GET /surveys", a.authorize(a.list, RoleReader, RoleCreator, RoleAdmin))
	mux.HandleFunc("POST /surveys", a.authorize(a.create, RoleCreator, RoleAdmin))
	mux.HandleFunc("POST /surveys/{id}/publish", a.authorize(a.publish, RoleCreator, RoleAdmin))
	mux.HandleFunc("PUT /surveys/{id}", a.authorize(a.edit, RoleCreator, RoleAdmin))
	mux.HandleFunc("DELETE /surveys/{id}", a.authorize(a.remove, RoleCreator, RoleAdmin))
	mux.HandleFunc("POST /surveys/{id}/contributors", a.authorize(a.addContributor, RoleCreator, RoleAdmin))
	return mux
}

func apiError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// authorize validates the bearer token (signature, issuer of a signed-up
// tenant, audience, lifetime) and requires one of roles.
func (a *api) authorize(next func(http.ResponseWriter, *http.Request, claims), roles ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			apiError(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		c, err := a.keys.verify(r.Context(), tok, APIResource)
		if err != nil {
			apiError(w, http.StatusUnauthorized, "the token is not valid for this API")
			return
		}
		if !a.tenants.Enrolled(c.Tid) {
			apiError(w, http.StatusForbidden, "the token's tenant has not signed up")
			return
		}
		if !c.hasRole(roles...) {
			apiError(w, http.StatusForbidden, "the token has none of the roles "+strings.Join(roles, ", "))
			return
		}
		next(w, r, c)
	}
}

func (a *api) published(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	var out []Survey
	for _, s := range a.surveys {
		if s.Published && a.tenants.Enrolled(s.Tenant) {
			v := *s
			v.Contributors = nil // the tenant's usernames are not for the public list
			out = append(out, v)
		}
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, nonNil(out))
}

func (a *api) list(w http.ResponseWriter, r *http.Request, c claims) {
	a.mu.Lock()
	var out []Survey
	for _, s := range a.surveys {
		if s.Tenant == c.Tid {
			v := *s
			v.CanEdit, v.CanManage = s.mayEdit(c), s.mayManage(c)
			out = append(out, v)
		}
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, nonNil(out))
}

// surveyInput reads a survey's title and question from r's JSON body,
// answering 400 itself when they are not acceptable.
func surveyInput(w http.ResponseWriter, r *http.Request) (title, question string, ok bool) {
	var in struct{ Title, Question string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
		apiError(w, http.StatusBadRequest, "send a JSON object with title and question")
		return "", "", false
	}
	in.Title, in.Question = strings.TrimSpace(in.Title), strings.TrimSpace(in.Question)
	if in.Title == "" || len(in.Title) > 200 || len(in.Question) > 1000 {
		apiError(w, http.StatusBadRequest, "a title of 1 to 200 characters is required; a question has at most 1000")
		return "", "", false
	}
	return in.Title, in.Question, true
}

func (a *api) create(w http.ResponseWriter, r *http.Request, c claims) {
	title, question, ok := surveyInput(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	s := &Survey{ID: a.next, Tenant: c.Tid, Title: title, Question: question, Owner: c.Name, OwnerID: c.Oid, Created: time.Now()}
	a.next++
	a.surveys = append(a.surveys, s)
	out := *s
	a.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

// withSurvey runs f, under a.mu, on the caller's tenant's survey that r
// names, if allowed says c may; it answers 404 or 403 itself otherwise
// (a survey of another tenant is as absent as one that never was).
func (a *api) withSurvey(w http.ResponseWriter, r *http.Request, c claims, allowed func(*Survey, claims) bool, refused string, f func(i int)) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		apiError(w, http.StatusNotFound, "no such survey")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.surveys, func(s *Survey) bool { return s.ID == id && s.Tenant == c.Tid })
	switch {
	case i < 0:
		apiError(w, http.StatusNotFound, "no such survey")
	case !allowed(a.surveys[i], c):
		apiError(w, http.StatusForbidden, refused)
	default:
		f(i)
	}
}

func (a *api) publish(w http.ResponseWriter, r *http.Request, c claims) {
	a.withSurvey(w, r, c, (*Survey).mayManage, "only the survey's owner or a SurveyAdmin may publish it", func(i int) {
		a.surveys[i].Published = true
		writeJSON(w, http.StatusOK, *a.surveys[i])
	})
}

func (a *api) edit(w http.ResponseWriter, r *http.Request, c claims) {
	title, question, ok := surveyInput(w, r)
	if !ok {
		return
	}
	a.withSurvey(w, r, c, (*Survey).mayEdit, "only the survey's owner, its contributors or a SurveyAdmin may edit it", func(i int) {
		a.surveys[i].Title, a.surveys[i].Question = title, question
		writeJSON(w, http.StatusOK, *a.surveys[i])
	})
}

func (a *api) remove(w http.ResponseWriter, r *http.Request, c claims) {
	a.withSurvey(w, r, c, (*Survey).mayManage, "only the survey's owner or a SurveyAdmin may delete it", func(i int) {
		a.surveys = slices.Delete(a.surveys, i, i+1)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *api) addContributor(w http.ResponseWriter, r *http.Request, c claims) {
	var in struct{ Username string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12)).Decode(&in); err != nil {
		apiError(w, http.StatusBadRequest, "send a JSON object with username")
		return
	}
	name := strings.ToLower(strings.TrimSpace(in.Username))
	if name == "" || len(name) > 254 || strings.ContainsAny(name, " \t\r\n") {
		apiError(w, http.StatusBadRequest, "a username (such as alice@contoso.com) is required")
		return
	}
	a.withSurvey(w, r, c, (*Survey).mayManage, "only the survey's owner or a SurveyAdmin may add contributors", func(i int) {
		if s := a.surveys[i]; !slices.Contains(s.Contributors, name) {
			s.Contributors = append(s.Contributors, name)
		}
		writeJSON(w, http.StatusOK, *a.surveys[i])
	})
}

func nonNil(s []Survey) []Survey {
	if s == nil {
		return []Survey{}
	}
	return s
}

// Tenants are the organizations that signed up: the app's own record,
// which the original sample keeps in its database. Both the web app
// (refusing sign-ins) and the API (refusing tokens) consult it.
type Tenants struct {
	mu sync.Mutex
	m  map[string]bool
}

// Enroll records that tenant signed up.
func (t *Tenants) Enroll(tenant string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]bool)
	}
	t.m[tenant] = true
}

// Enrolled reports whether tenant signed up.
func (t *Tenants) Enrolled(tenant string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[tenant]
}
