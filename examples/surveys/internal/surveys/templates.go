package surveys

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
)

func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// templates are the pages: plain HTML, no script, readable on a phone,
// every form control labelled. Each page ends with the farm's status: the
// instance that served it and where its API token came from.
var templates = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Tailspin Surveys</title>
<style>
body{font-family:system-ui,sans-serif;max-width:42rem;margin:0 auto;padding:0 1rem 2rem;line-height:1.45;color:#1b1b1b}
header{display:flex;flex-wrap:nowrap;gap:1rem;align-items:center;border-bottom:2px solid #0b5cad;padding:.6rem 0;white-space:nowrap}
header .brand{font-weight:700;color:#0b5cad;text-decoration:none;margin-right:auto}
nav{display:flex;flex-wrap:nowrap;align-items:center;gap:.6rem;font-size:.95rem}
nav button{font-size:.95rem;padding:.3rem .7rem}
a{color:#0b5cad}
button{font-size:1rem;padding:.4rem .9rem;cursor:pointer}
label{display:block;margin-top:.8rem;font-weight:600}
input[type=text],textarea{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
form.inline{display:inline}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #ddd}
.problem{color:#a00;border-left:4px solid #a00;padding-left:.6rem}
.notice{border-left:4px solid #0b5cad;padding-left:.6rem}
aside.farm{margin-top:2rem;padding:.7rem 1rem;background:#f1f5fa;border-radius:6px;font-size:.95rem}
.cache{color:#0a6a2a;font-weight:700}.endpoint{color:#9a5b00;font-weight:700}
</style></head><body>
<header><a class="brand" href="/">Tailspin Surveys</a>
<nav aria-label="Main">
<a href="/">Published</a>
{{if .User}}<a href="/surveys">My organization's surveys</a><a href="/surveys/new">New survey</a>
<form class="inline" method="post" action="/signout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
{{else}}<a href="/enroll">Enroll your organization</a><a href="/signin">Sign in</a>{{end}}
</nav></header>
<main>
<h1>{{.Title}}</h1>
{{if .User}}<p>Signed in as <strong id="user">{{.User}}</strong> ({{.Tenant}})</p>{{end}}
{{end}}

{{define "foot"}}</main>
<aside class="farm" aria-label="Farm status">
<p>Served by <strong id="instance">{{.Instance}}</strong>.</p>
{{with .Token}}<p>API token for this page: <span id="token-source" class="{{if .FromCache}}cache{{else}}endpoint{{end}}">{{if .FromCache}}from the shared cache{{else}}from the token endpoint{{end}}</span>.</p>
<p>This session: <span id="session-cache">{{.Session.Cache}}</span> from the shared cache, <span id="session-endpoint">{{.Session.Endpoint}}</span> from the token endpoint.
Whole farm: <span id="farm-cache">{{.Farm.Cache}}</span> from the shared cache, <span id="farm-endpoint">{{.Farm.Endpoint}}</span> from the token endpoint.</p>
{{else}}<p id="token-source">This page made no API call with a user's token.</p>{{end}}
</aside></body></html>{{end}}

{{define "surveylist"}}{{if .}}<table><thead><tr><th scope="col">Survey</th><th scope="col">Owner</th><th scope="col">Status</th></tr></thead><tbody>
{{range .}}<tr><td>{{.Title}}{{if .Question}}<br><small>{{.Question}}</small>{{end}}</td><td>{{.Owner}}</td><td>{{if .Published}}published{{else}}draft{{end}}</td></tr>{{end}}
</tbody></table>{{else}}<p>No surveys yet.</p>{{end}}{{end}}

{{define "home"}}{{template "head" .}}
{{if .Message}}<p class="notice" role="status" id="message">{{.Message}}</p>{{end}}
<p>A multitenant web app on a farm of servers: an organization enrolls once, its users sign in with their work account, and every server serves them from one shared, encrypted token cache.</p>
<h2>Published surveys</h2>
<div id="published">{{template "surveylist" .Surveys}}</div>
{{template "foot" .}}{{end}}

{{define "surveys"}}{{template "head" .}}
<div id="surveys">{{if .Surveys}}<table><thead><tr><th scope="col">Survey</th><th scope="col">Owner</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead><tbody>
{{range .Surveys}}<tr><td>{{.Title}}{{if .Contributors}}<br><small>Contributors: <span class="contributors">{{range $i, $c := .Contributors}}{{if $i}}, {{end}}{{$c}}{{end}}</span></small>{{end}}</td><td>{{.Owner}}</td><td>{{if .Published}}published{{else}}draft
{{if .CanManage}}<form class="inline" method="post" action="/surveys/{{.ID}}/publish"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button type="submit" aria-label="Publish {{.Title}}">Publish</button></form>{{end}}{{end}}</td>
<td>{{if .CanEdit}}<a href="/surveys/{{.ID}}/edit" aria-label="Edit {{.Title}}">Edit</a>{{end}}
{{if .CanManage}}<form class="inline" method="post" action="/surveys/{{.ID}}/delete"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button type="submit" aria-label="Delete {{.Title}}">Delete</button></form>
<form method="post" action="/surveys/{{.ID}}/contributors"><input type="hidden" name="csrf" value="{{$.CSRF}}">
<label for="contributor-{{.ID}}">Add a contributor to {{.Title}}</label>
<input type="text" id="contributor-{{.ID}}" name="username" placeholder="name@{{$.Tenant}}" required maxlength="254">
<button type="submit">Add contributor</button></form>{{end}}</td></tr>{{end}}
</tbody></table>{{else}}<p>No surveys yet.</p>{{end}}</div>
<p><a href="/surveys/new">Create a survey</a></p>
{{template "foot" .}}{{end}}

{{define "new"}}{{template "head" .}}
{{if .Message}}<p class="problem" role="alert">{{.Message}}</p>{{end}}
<form method="post" action="/surveys">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="title">Title</label>
<input type="text" id="title" name="title" required maxlength="200">
<label for="question">Question</label>
<textarea id="question" name="question" rows="3" maxlength="1000"></textarea>
<p><button type="submit">Create survey</button></p>
</form>
{{template "foot" .}}{{end}}

{{define "edit"}}{{template "head" .}}
{{with .Survey}}<form method="post" action="/surveys/{{.ID}}">
<input type="hidden" name="csrf" value="{{$.CSRF}}">
<label for="title">Title</label>
<input type="text" id="title" name="title" required maxlength="200" value="{{.Title}}">
<label for="question">Question</label>
<textarea id="question" name="question" rows="3" maxlength="1000">{{.Question}}</textarea>
<p><button type="submit">Save survey</button> <a href="/surveys">Cancel</a></p>
</form>{{end}}
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}
<p class="{{if .Problem}}problem{{else}}notice{{end}}" role="{{if .Problem}}alert{{else}}status{{end}}" id="message">{{.Message}}</p>
{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}
{{template "foot" .}}{{end}}
`))
