# A Rack application. With the rack gem, `rackup` serves it; offline, server.rb does.
require_relative "app"

run HelloApp.new
