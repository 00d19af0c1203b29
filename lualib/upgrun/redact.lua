-- upgrun.redact — the one redactor: replaces known secret values by "***" in
-- strings, and blanks what looks like a token or a password in a message even
-- when its value is unknown (X-Auth-Token: ..., "password": "...").
--
--   redact.string(s, secrets [, min_len]) -> s   secrets: array of strings
--   redact.deep(v, secrets) -> v                 every string in a table (in place)
--   redact.is_secret_name(name) -> bool          "password", "os_token", ...
local M = {}

local SECRET_WORDS = { "password", "passwd", "secret", "token", "key", "credential" }

-- Whether a parameter or field name names a secret. "keystone" (the
-- OpenStack identity service: keystone_rate, keystone_url) is not a key.
function M.is_secret_name(name)
  local l = tostring(name):lower():gsub("keystone", "")
  for _, w in ipairs(SECRET_WORDS) do if l:find(w, 1, true) then return true end end
  return false
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Replaces each secret of at least min_len (default 3) characters, then the
-- values of token headers and password/secret JSON fields.
function M.string(s, secrets, min_len)
  if type(s) ~= "string" then return s end
  min_len = min_len or 3
  for _, sec in ipairs(secrets or {}) do
    if type(sec) == "string" and #sec >= min_len then s = s:gsub(escape(sec), "***") end
  end
  s = s:gsub("([Xx]%-[%w%-]*[Tt]oken%s*[:=]%s*)[^%s,;\"']+", "%1***")
  s = s:gsub('("[%w_]*password"%s*:%s*)"[^"]*"', '%1"***"')
  s = s:gsub('("secret"%s*:%s*)"[^"]*"', '%1"***"')
  return s
end

-- Redacts every string inside v (tables in place); returns v.
function M.deep(v, secrets, min_len)
  if type(v) == "string" then return M.string(v, secrets, min_len) end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = M.deep(x, secrets, min_len) end
  end
  return v
end

return M
