# frozen_string_literal: true

require "action_cable/subscription_adapter/async"

# Stock AsyncSubscriberMap posts every callback to a 10-thread pool, so a burst
# to one stream may be delivered out of order. This variant keeps the async
# adapter's shape (callbacks off the broadcaster's thread) but runs them in
# order on one dedicated thread.
module ActionCable
  module SubscriptionAdapter
    class Ordered < Async
      def initialize(*)
        super
        @queue = Queue.new
        @thread = Thread.new do
          loop do
            job = @queue.pop
            break if job == :stop
            begin
              job.call
            rescue Exception => e # rubocop:disable Lint/RescueException
              server.logger.error("ordered adapter callback failed: #{e.class}: #{e.message}")
            end
          end
        end
      end

      def shutdown
        @queue << :stop
        super
      end

      private

      def new_subscriber_map
        OrderedSubscriberMap.new(@queue)
      end

      class OrderedSubscriberMap < SubscriberMap
        def initialize(queue)
          @queue = queue
          super()
        end

        def add_subscriber(*)
          @queue << -> { super }
        end

        def invoke_callback(*)
          @queue << -> { super }
        end
      end
    end
  end
end
