# frozen_string_literal: true
# Real ActionCable server for realtime_sync's tests. Start with:
#   CABLE_PORT=PORT puma -b tcp://127.0.0.1:PORT -t 4:16 tests/servers/actioncable/config.ru
require_relative "cable_app"

map "/cable" do
  run ActionCable.server
end

map "/" do
  run TestCable::Control.new
end
