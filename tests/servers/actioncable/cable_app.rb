# frozen_string_literal: true
#
# A real Rails ActionCable server (Debian bookworm: actioncable 6.1.7) without a
# Rails app, with a Chatwoot-shaped RoomChannel and an HTTP control surface for
# the test suite. Loaded by config.ru next to this file; see README.md here.
#
# Environment:
#   CABLE_PORT              port the server listens on (used for the allowed Origin)
#   CABLE_ALLOWED_ORIGINS   comma-separated exact origins; default http://127.0.0.1:$CABLE_PORT
#   CABLE_ADAPTER           pubsub adapter: "ordered" (default: async adapter whose callbacks run
#                           in order on one thread) or "async" (stock Rails, may reorder)
#   CABLE_WORKER_POOL       ActionCable worker pool size (default 1 = in-order delivery per
#                           subscriber; Rails' default is 4, which may reorder a burst)
#   CABLE_LOG_LEVEL         debug|info|warn (default info)
#   CABLE_PRESENCE_DURATION seconds a user stays online after a presence (default 20, as
#                           Chatwoot's OnlineStatusTracker::PRESENCE_DURATION; older versions 60)

require "json"
require "logger"
require "rack"
require "action_cable"
$LOAD_PATH.unshift(File.expand_path("lib", __dir__))
require "action_cable/subscription_adapter/ordered"

$stdout.sync = true
$stderr.sync = true

module TestCable
  PORT = (ENV["CABLE_PORT"] || "0").to_i

  # pubsub_token => user_id (users) ; tokens of contacts map to a contact id.
  USERS = { "user-token-1" => 7, "user-token-2" => 8 }.freeze
  CONTACTS = { "contact-token-1" => 101, "contact-token-2" => 102 }.freeze
  ACCOUNT_ID = 1
  # Every user is an agent of accounts 1 and 2: a user's pubsub token is the user's, not an
  # account's, so the one stream carries both accounts' broadcasts (as in Chatwoot).
  USER_ACCOUNTS = [1, 2].freeze
  PRESENCE_DURATION = Float(ENV["CABLE_PRESENCE_DURATION"] || "20")

  @lock = Mutex.new
  @presence_counts = Hash.new(0)    # token => number of update_presence actions
  @subscribe_counts = Hash.new(0)   # token => number of subscribed callbacks run
  @online_users = {}                # [account_id, user_id] => last seen (monotonic seconds)
  @online_contacts = {}             # [account_id, contact_id] => last seen
  @pings_enabled = true
  @events = []                      # small log of notable server-side events

  class << self
    attr_reader :lock

    def pings_enabled?
      @pings_enabled
    end

    def pings_enabled=(value)
      @lock.synchronize { @pings_enabled = value }
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # Valid token? Returns [:user, id] / [:contact, id] / nil.
    # Besides the fixed tables: "user-<uid>-<anything>" is a user with id <uid>,
    # "contact-<anything>" a contact (ids derived from the token).
    def lookup(token, user_id)
      token = token.to_s
      if user_id.nil? || user_id.to_s.empty?
        return [:contact, CONTACTS[token]] if CONTACTS.key?(token)
        return [:contact, 1000 + (token.hash.abs % 100_000)] if token.start_with?("contact-")
        return nil
      end
      uid = Integer(user_id.to_s, exception: false)
      return nil unless uid
      return [:user, uid] if USERS[token] == uid
      m = /\Auser-(\d+)-/.match(token)
      return [:user, uid] if m && m[1].to_i == uid
      nil
    end

    def record_subscribe(token)
      @lock.synchronize { @subscribe_counts[token] += 1 }
    end

    def record_presence(token)
      @lock.synchronize { @presence_counts[token] += 1 }
    end

    # OnlineStatusTracker.update_presence: a sorted set per account, scored by the time.
    def mark_online(kind, account_id, id)
      @lock.synchronize do
        (kind == :user ? @online_users : @online_contacts)[[account_id, id]] = now
      end
    end

    # OnlineStatusTracker.get_available_users/contacts: seen within PRESENCE_DURATION.
    def online(table, account_id)
      cutoff = now - PRESENCE_DURATION
      table.select { |(acc, _), t| acc == account_id && t >= cutoff }.keys.map(&:last).sort.to_h { |id| [id.to_s, "online"] }
    end

    def presence_payload(kind, account_id)
      @lock.synchronize do
        data = { account_id: account_id, users: online(@online_users, account_id) }
        data[:contacts] = online(@online_contacts, account_id) if kind == :user
        data
      end
    end

    def event(text)
      @lock.synchronize do
        @events << text
        @events.shift while @events.size > 200
      end
    end

    def stats
      @lock.synchronize do
        {
          presence_counts: @presence_counts.dup,
          subscribe_counts: @subscribe_counts.dup,
          pings_enabled: @pings_enabled,
          connections: ActionCable.server.connections.size,
          events: @events.last(50)
        }
      end
    end

    def presence_count(token)
      @lock.synchronize { @presence_counts[token] }
    end
  end
end

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    # Chatwoot's connection accepts everyone; authentication is at subscribe
    # time. For tests: "?reject=1" in the URL or an "X-Test-Reject: 1" header
    # makes the server reject the connection as unauthorized
    # ({"type":"disconnect","reason":"unauthorized","reconnect":false}).
    def connect
      query = Rack::Utils.parse_query(request.query_string.to_s)
      if query["reject"] == "1" || request.headers["X-Test-Reject"] == "1"
        TestCable.event("connection rejected")
        reject_unauthorized_connection
      end
      TestCable.event("connection accepted")
    end

    def beat
      super if TestCable.pings_enabled?
    end
  end

  class Channel < ActionCable::Channel::Base
  end
end

class TestCableExplosion < StandardError; end

# Chatwoot's RoomChannel, with a fixed token table instead of a database.
class RoomChannel < ApplicationCable::Channel
  def subscribed
    @pubsub_token = params[:pubsub_token].to_s
    TestCable.record_subscribe(@pubsub_token)
    # Chatwoot's RoomChannel never calls `reject`: every refusal is an exception (no answer).
    raise TestCableExplosion, "explode" if @pubsub_token == "explode"

    who = TestCable.lookup(@pubsub_token, params[:user_id])
    # Chatwoot: User.find_by!/ContactInbox.find_by! raise RecordNotFound for
    # an unknown token: the client gets nothing at all.
    raise TestCableExplosion, "unknown pubsub_token #{@pubsub_token.inspect}" unless who

    @kind, @id = who
    if @kind == :user
      # Chatwoot: @current_user.accounts.find(params[:account_id]) raises for a missing account
      # id or an account the user is not in.
      account = Integer(params[:account_id].to_s, exception: false)
      raise TestCableExplosion, "user without account #{params[:account_id].inspect}" unless TestCable::USER_ACCOUNTS.include?(account)
      @account_id = account
    else
      @account_id = TestCable::ACCOUNT_ID
    end
    stream_from @pubsub_token
    # "account_<id>": every user of the account; a user streams them all (see USER_ACCOUNTS).
    TestCable::USER_ACCOUNTS.each { |acc| stream_from "account_#{acc}" } if @kind == :user
    TestCable.event("subscribed: #{@pubsub_token}")
    TestCable.mark_online(@kind, @account_id, @id)
    # Chatwoot also calls broadcast_presence here, but that broadcast races the
    # stream subscription (stream_from is asynchronous) and is normally lost; it
    # is left out so that the tests are deterministic.
  end

  def unsubscribed
    TestCable.event("unsubscribed: #{@pubsub_token}")
  end

  def update_presence
    TestCable.record_presence(@pubsub_token)
    TestCable.mark_online(@kind, @account_id, @id)
    broadcast_presence
  end

  private

  def broadcast_presence
    ActionCable.server.broadcast(@pubsub_token, { event: "presence.update", data: TestCable.presence_payload(@kind, @account_id) })
  end
end

module TestCable
  # HTTP control surface (127.0.0.1 only; the server binds there).
  class Control
    JSON_HEADERS = { "Content-Type" => "application/json" }.freeze

    def call(env)
      req = Rack::Request.new(env)
      body = req.post? ? parse_body(req) : {}
      case [req.request_method, req.path_info]
      when ["GET", "/health"]
        reply(ok: true)
      when ["POST", "/broadcast"]
        stream = body.fetch("stream")
        ActionCable.server.broadcast(stream, body.fetch("message"))
        reply(ok: true)
      when ["POST", "/burst"]
        stream = body.fetch("stream")
        count = Integer(body.fetch("count"))
        event = body["event"] || "message.created"
        start = Integer(body["start"] || 1)
        count.times do |n|
          i = start + n
          ActionCable.server.broadcast(stream, {
            event: event,
            data: { id: i, account_id: ACCOUNT_ID, conversation_id: 1, content: "m#{i}" }
          })
        end
        reply(ok: true, count: count)
      when ["GET", "/online"]
        account = Integer(req.params["account_id"] || TestCable::ACCOUNT_ID)
        reply(TestCable.presence_payload(:user, account))
      when ["GET", "/presence_count"]
        token = req.params["token"].to_s
        reply(token: token, count: TestCable.presence_count(token))
      when ["GET", "/stats"]
        reply(TestCable.stats)
      when ["POST", "/restart_notice"]
        n = ActionCable.server.connections.size
        ActionCable.server.restart
        TestCable.event("server restart (#{n} connections)")
        reply(ok: true, connections: n)
      when ["POST", "/disconnect_all"]
        reason = body["reason"]
        reconnect = body.key?("reconnect") ? body["reconnect"] : true
        conns = ActionCable.server.connections.dup
        conns.each { |c| c.close(reason: reason, reconnect: reconnect) }
        reply(ok: true, connections: conns.size)
      when ["POST", "/pings"]
        TestCable.pings_enabled = body.fetch("enabled") ? true : false
        reply(ok: true, pings_enabled: TestCable.pings_enabled?)
      else
        [404, JSON_HEADERS.dup, [JSON.generate(error: "not found")]]
      end
    rescue KeyError, ArgumentError, TypeError, JSON::ParserError => e
      [400, JSON_HEADERS.dup, [JSON.generate(error: "#{e.class}: #{e.message}")]]
    end

    private

    def parse_body(req)
      raw = req.body.read.to_s
      raw.empty? ? {} : JSON.parse(raw)
    end

    def reply(obj)
      [200, JSON_HEADERS.dup, [JSON.generate(obj)]]
    end
  end
end

# ---- configuration -------------------------------------------------------
log_level = (ENV["CABLE_LOG_LEVEL"] || "info").downcase
ActionCable.server.config.logger = Logger.new($stdout, level: Logger.const_get(log_level.upcase))
ActionCable.server.config.cable = { "adapter" => (ENV["CABLE_ADAPTER"] || "ordered") }
ActionCable.server.config.worker_pool_size = Integer(ENV["CABLE_WORKER_POOL"] || "1")
ActionCable.server.config.connection_class = -> { ApplicationCable::Connection }
ActionCable.server.config.mount_path = "/cable"
ActionCable.server.config.allow_same_origin_as_host = false
ActionCable.server.config.disable_request_forgery_protection = false
ActionCable.server.config.allowed_request_origins =
  if ENV["CABLE_ALLOWED_ORIGINS"] && !ENV["CABLE_ALLOWED_ORIGINS"].empty?
    ENV["CABLE_ALLOWED_ORIGINS"].split(",").map(&:strip)
  else
    ["http://127.0.0.1:#{TestCable::PORT}"]
  end
