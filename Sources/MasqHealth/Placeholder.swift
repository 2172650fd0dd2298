import MasqCore
