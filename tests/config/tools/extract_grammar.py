"""Dev tool: keyword paths registered by keepalived's parsers at a git tag (read-only reference)."""
import re, subprocess, sys, json
REPO = "/work/.mirror/acassen+keepalived/repo"
TAG = sys.argv[1] if len(sys.argv) > 1 else "v2.2.7"
files = subprocess.run(["git", "-C", REPO, "ls-tree", "-r", "--name-only", TAG], capture_output=True, text=True).stdout.split()
files = [f for f in files if f.endswith(".c") and (f.startswith("keepalived/") or f.startswith("lib/"))]
funcs = {}
UNDEF = {"_WITH_IPTABLES_", "_HAVE_LIBIPSET_", "_ONE_PROCESS_DEBUG_", "_MEM_CHECK_", "ENABLE_LOG_TO_FILE",
         "THREAD_DUMP", "TMP_TRACK_FILE_DEBUG", "_CHECKER_DEBUG_", "_REGEX_DEBUG_", "_WITH_PERF_", "_EPOLL_DEBUG_",
         "_EPOLL_THREAD_DUMP_", "_TIMER_CHECK_", "_SMTP_ALERT_DEBUG_", "_WITH_SNMP_KEEPALIVED_", "PCRE2_DONT_USE_JIT"} | set(sys.argv[2:])
def evalcond(kind, expr):
    expr = expr.split("/*")[0].strip()
    if kind == "ifdef": return expr not in UNDEF
    if kind == "ifndef": return expr in UNDEF
    e = re.sub(r"defined\s*\(?\s*(\w+)\s*\)?", lambda m: str(m.group(1) not in UNDEF), expr)
    e = e.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    try: return bool(eval(e, {}, {"True": True, "False": False}))
    except Exception: return True
def preprocess(lines):
    out, stack = [], []  # (active_now, any_taken, parent_active)
    for ln in lines:
        m = re.match(r"^\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*)$", ln)
        if m:
            k, e = m.groups()
            parent = all(a for a, _, _ in stack)
            if k in ("ifdef", "ifndef", "if"):
                v = evalcond(k, e); stack.append((v, v, parent))
            elif k == "elif":
                a, taken, p = stack.pop(); v = (not taken) and evalcond("if", e); stack.append((v, taken or v, p))
            elif k == "else":
                a, taken, p = stack.pop(); stack.append((not taken, True, p))
            elif k == "endif" and stack:
                stack.pop()
            out.append("")
            continue
        out.append(ln if all(a for a, _, _ in stack) else "")
    return out
defre = re.compile(r"^(?:static\s+)?(?:inline\s+)?[\w\s\*]*?\b(\w+)\s*\(([^;]*)\)\s*$")
opre = re.compile(r'install_keyword_root\s*\(\s*"([^"]+)"|install_keyword(?:_conditional)?\s*\(\s*"([^"]+)"|install_keyword\s*\(\s*(keyword)\s*,|(install_sublevel_end)\s*\(\s*\)|(install_sublevel)\s*\(\s*\)|\b(\w+)\s*\(\s*(?:"([^"]*)")?')
for f in files:
    text = subprocess.run(["git", "-C", REPO, "show", f"{TAG}:{f}"], capture_output=True, text=True).stdout
    if "install_" not in text: continue
    lines = preprocess(text.split("\n"))
    i = 0
    while i < len(lines):
        m = re.match(r"^(\w+)\s*\(([^;]*)\)\s*$", lines[i])
        if m and i + 1 < len(lines) and lines[i+1].startswith("{"):
            name = m.group(1); body = []
            j = i + 2
            while j < len(lines) and not lines[j].startswith("}"):
                body.append(lines[j]); j += 1
            ops = []
            for ln in body:
                s = ln.split("//")[0]
                for mm in opre.finditer(s):
                    if mm.group(1): ops.append(("root", mm.group(1)))
                    elif mm.group(2): ops.append(("kw", mm.group(2)))
                    elif mm.group(3): ops.append(("kwvar",))
                    elif mm.group(4): ops.append(("end",))
                    elif mm.group(5): ops.append(("sub",))
                    elif mm.group(6): ops.append(("call", mm.group(6), mm.group(7)))
            funcs[name] = ops
            i = j
        i += 1
SKIP = {"install_keyword_root", "install_keyword", "install_sublevel", "install_sublevel_end", "install_root_end_handler", "install_sublevel_end_handler"}
def has(fn, seen=()):
    if fn not in funcs or fn in seen: return False
    return any(o[0] in ("root", "kw", "sub", "end", "kwvar") or (o[0] == "call" and o[1] not in SKIP and has(o[1], seen + (fn,))) for o in funcs[fn])
tree = {}
roots = []
state = {"root": None, "sub": 0}
def add(name, is_root):
    if is_root:
        node = {"name": name, "kids": []}
        roots.append(node); state["root"] = node; state["sub"] = 0; return
    node = state["root"]
    for _ in range(state["sub"]):
        node = node["kids"][-1]
    node["kids"].append({"name": name, "kids": []})
def run(fn, depth=0, arg=None):
    for o in funcs.get(fn, []):
        if o[0] == "kwvar": add(arg, False); continue
        if o[0] == "root": add(o[1], True)
        elif o[0] == "kw": add(o[1], False)
        elif o[0] == "sub": state["sub"] += 1
        elif o[0] == "end": state["sub"] -= 1
        elif o[0] == "call" and o[1] not in SKIP and o[1] != fn and has(o[1]) and depth < 10:
            run(o[1], depth + 1, o[2])
for entry in ("init_global_keywords", "init_vrrp_keywords", "init_check_keywords", "init_bfd_keywords", "add_track_file_keywords"):
    run(entry)
paths = set()
def walk(node, prefix):
    p = prefix + (node["name"],)
    paths.add(p)
    for k in node["kids"]: walk(k, p)
for r in roots: walk(r, ())
for p in sorted(paths): print(" ".join(p))
