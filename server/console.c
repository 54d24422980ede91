/* GET /: a small web console, one static page.  It uses only the public
 * API: the projections table, a live tail through EventSource (with the
 * token as ?access_token=, since EventSource cannot send headers), and the
 * query endpoint. */
#include "server/srv_int.h"

static const char page[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>evlog</title><style>"
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "pre{background:#f6f6f6;padding:8px;max-height:24em;overflow:auto}"
    "input,textarea{font:13px monospace}</style></head><body>"
    "<h1>evlog</h1>"
    "<p>Token (if the server has a token file): <input id=tok size=40></p>"
    "<h2>Projections</h2><table id=proj></table>"
    "<h2>Query</h2><p><input id=qp placeholder=projection size=12> "
    "<input id=qs size=70 value=\"SELECT name FROM sqlite_master WHERE type='table'\"> "
    "<button onclick=query()>Run</button></p><pre id=qr></pre>"
    "<h2>Live events</h2><p><input id=flt placeholder=\"type=JobQueued\" size=30> "
    "<button onclick=tail()>Follow</button></p><pre id=ev></pre>"
    "<script>"
    "function hdr(){var t=document.getElementById('tok').value;return t?{Authorization:'Bearer '+t}:{}}"
    "function esc(s){return String(s).replace(/[&<>]/g,function(c){return{'&':'&amp;','<':'&lt;','>':'&gt;'}[c]})}"
    /* a rebuild in flight as a percentage of the head */
    "function rb(p){return p.rebuild?' '+Math.floor(100*p.rebuild.position/Math.max(1,p.rebuild.head))+'%':''}"
    "function proj(){fetch('/projections',{headers:hdr()}).then(function(r){return r.json()}).then(function(l){"
    "var h='<tr><th>name<th>state<th>checkpoint<th>lag<th>rows';if(Array.isArray(l))l.forEach(function(p){"
    "h+='<tr><td>'+esc(p.name)+'<td>'+esc(p.state)+rb(p)+'<td>'+p.checkpoint+'<td>'+p.lag+'<td>'+esc(JSON.stringify(p.tables))});"
    "document.getElementById('proj').innerHTML=h})}"
    "function query(){var p=document.getElementById('qp').value,b={sql:document.getElementById('qs').value};"
    "var h=hdr();h['Content-Type']='application/json';"
    "fetch('/projections/'+encodeURIComponent(p)+'/query',{method:'POST',headers:h,body:JSON.stringify(b)})"
    ".then(function(r){return r.text()}).then(function(t){document.getElementById('qr').textContent=t})}"
    /* fetch() rather than EventSource: frames are named by event type,
     * which EventSource only delivers to listeners registered per type. */
    "var ab;function tail(){if(ab)ab.abort();ab=new AbortController();var el=document.getElementById('ev');"
    "el.textContent='';fetch('/subscribe?from=now&'+document.getElementById('flt').value,"
    "{headers:hdr(),signal:ab.signal}).then(function(r){var rd=r.body.getReader(),td=new TextDecoder(),buf='';"
    "function pump(){return rd.read().then(function(x){if(x.done)return;buf+=td.decode(x.value,{stream:true});"
    "var i;while((i=buf.indexOf('\\n\\n'))>=0){var f=buf.slice(0,i);buf=buf.slice(i+2);"
    "if(f[0]!==':')el.textContent=f.replace(/^data: /m,'')+'\\n'+el.textContent}return pump()})}return pump()})}"
    "proj();setInterval(proj,5000);"
    "</script></body></html>";

void evl__srv_console(srv_req *q) {
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_reference(b, page, sizeof page - 1, NULL, NULL);
    evl__srv_reply(&q->rsp, 200, "text/html; charset=utf-8", b);
    if (b) evbuffer_free(b);
}
